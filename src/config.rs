//! The agent's configuration: one typed `Config`, loaded from defaults, a TOML file,
//! environment variables and command-line flags, in that order of precedence.
//!
//! Owns `Config` (what the agent runs with, fully resolved and validated), `AgentArgs` (the
//! `shoal agent` flags, an outside contract), the TOML file schema, the duration syntax
//! ("500ms", "30s", "5m", "1h30m") and the translation to `core::NodeConfig`. Every bad value
//! is refused with the name of its field. It must not open sockets or start anything; the
//! only I/O is reading the config file and the host name.

use serde::{Deserialize, Serialize};
use shoal_core::identity::{validate_name, MAX_NAME_LEN};
use shoal_core::wire::MAX_LABEL_LEN;
use shoal_core::{GuardConfig, GuardMode, NodeConfig, NodeMeta, Profile, Service, Timings};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
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

/// A service this node offers, as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    pub port: u16,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Health checks (`[[services.checks]]`), run by this agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::agent::checks::CheckSpec>,
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
    /// Optional loopback TCP address of the local API.
    pub api_http: Option<SocketAddr>,
    /// Optional loopback TCP address of the Consul-compatible read API (`api::consul`).
    pub consul_api: Option<SocketAddr>,
    /// Optional loopback address of the DNS interface (UDP and TCP, `dns`).
    pub dns: Option<SocketAddr>,
    /// TTL of DNS answers (default 0: clients ask again each time).
    pub dns_ttl: Duration,
    pub profile: Profile,
    pub cluster_label: String,
    /// A `tracing` filter directive (`info`, `debug`, `shoal=debug,warn`).
    pub log_level: String,
    pub log_format: LogFormat,
    /// The profile's timings with the `[timings]` overrides applied.
    pub timings: Timings,
    pub guard: GuardConfig,
    /// Command run with the details when the guard changes state.
    pub alert_hook: Option<String>,
    /// The config file this was loaded from, if any (re-read on SIGHUP).
    pub config_file: Option<PathBuf>,
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
    pub limits: crate::api::limits::ApiLimits,
    pub socket: crate::api::limits::SocketAccess,
}

/// The `[api_server]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiServerFile {
    socket_mode: Option<String>,
    socket_group: Option<String>,
    max_connections: Option<usize>,
    max_watches: Option<usize>,
    header_timeout: Option<String>,
    idle_timeout: Option<String>,
}

fn resolve_api_server(f: &ApiServerFile) -> Result<ApiServerSettings, ConfigError> {
    let socket = crate::api::limits::SocketAccess::parse(
        f.socket_mode.as_deref(),
        f.socket_group.as_deref(),
    )
    .map_err(|m| invalid("api_server.socket", m))?;
    let mut limits = crate::api::limits::ApiLimits::default();
    if let Some(n) = f.max_connections {
        limits.max_connections = n;
    }
    if let Some(n) = f.max_watches {
        limits.max_watches = n;
    }
    for (name, v, slot) in [
        (
            "header_timeout",
            &f.header_timeout,
            &mut limits.header_timeout,
        ),
        ("idle_timeout", &f.idle_timeout, &mut limits.idle_timeout),
    ] {
        if let Some(t) = v {
            *slot = parse_duration(t).map_err(|m| invalid(format!("api_server.{name}"), m))?;
        }
    }
    limits
        .validate()
        .map_err(|m| invalid("api_server", m.replace("api_", "api_server.")))?;
    Ok(ApiServerSettings { limits, socket })
}

/// The `shoal agent` flags. This exact set is relied on by tools outside the project.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct AgentArgs {
    /// Node name, unique in the cluster [default: host name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// UDP address to bind [default: 0.0.0.0:7946]
    #[arg(long, value_name = "IP:PORT")]
    pub bind: Option<String>,
    /// Address other members use to reach this node [default: the bind address]
    #[arg(long, value_name = "IP:PORT")]
    pub advertise: Option<String>,
    /// Local API socket [default: unix:<data-dir>/shoal.sock]
    #[arg(long, value_name = "unix:PATH")]
    pub api: Option<String>,
    /// Also serve the local API on this loopback TCP address
    #[arg(long = "api-http", value_name = "127.0.0.1:PORT")]
    pub api_http: Option<String>,
    /// Serve a Consul-compatible read API on this loopback TCP address [alone: 127.0.0.1:8500]
    #[arg(long = "consul-api", value_name = "127.0.0.1:PORT", num_args = 0..=1, default_missing_value = "127.0.0.1:8500")]
    pub consul_api: Option<String>,
    /// Serve DNS (zone `shoal.`, UDP and TCP) on this loopback address [alone: 127.0.0.1:8600]
    #[arg(long = "dns", value_name = "127.0.0.1:PORT", num_args = 0..=1, default_missing_value = "127.0.0.1:8600")]
    pub dns: Option<String>,
    /// Seed to join (repeatable)
    #[arg(long, value_name = "IP:PORT")]
    pub join: Vec<String>,
    /// Tag of this node (repeatable)
    #[arg(long = "tag", value_name = "key=value")]
    pub tags: Vec<String>,
    /// Service offered by this node (repeatable)
    #[arg(long = "service", value_name = "name:port")]
    pub services: Vec<String>,
    /// Data directory [default: /var/lib/shoal]
    #[arg(long = "data-dir", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML config file (SHOAL_* variables and flags override it)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Timing profile [default: lan]
    #[arg(long, value_parser = crate::core_args::profile())]
    pub profile: Option<Profile>,
    /// Cluster label: datagrams with another label are dropped
    #[arg(long = "cluster-label", value_name = "LABEL")]
    pub cluster_label: Option<String>,
    /// Log filter (`info`, `debug`, `shoal=debug,warn`) [default: info]
    #[arg(long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format [default: text]
    #[arg(long = "log-format", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Guard mode [default: enforce]
    #[arg(long = "guard-mode", value_parser = crate::core_args::guard_mode())]
    pub guard_mode: Option<GuardMode>,
    /// Cluster key (base64 of 32 bytes, from `shoal keygen`): seeds the keyring
    #[arg(
        long,
        value_name = "KEY",
        env = "SHOAL_ENCRYPT",
        hide_env_values = true
    )]
    pub encrypt: Option<String>,
    /// Run without encryption (anyone who can send a datagram can speak for any node)
    #[arg(long)]
    pub insecure: bool,
    /// Keyring file [default: <data-dir>/keyring]
    #[arg(long = "keyring-file", value_name = "FILE")]
    pub keyring_file: Option<PathBuf>,
    /// Transition to encryption: `send` (send plaintext, accept both) or `accept` (seal,
    /// accept both) [default: refuse plaintext]
    #[arg(long, value_name = "refuse|accept|send")]
    pub plaintext: Option<String>,
    /// API commands (tags, services, join, leave, guard, keys) need the token in this file
    #[arg(long = "api-token-file", value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
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

// ----- the TOML schema (every field optional: unset means "keep the lower layer") --------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    name: Option<String>,
    bind: Option<String>,
    advertise: Option<String>,
    join: Option<Vec<String>>,
    tags: Option<BTreeMap<String, String>>,
    services: Option<Vec<ServiceConfig>>,
    data_dir: Option<PathBuf>,
    api: Option<String>,
    api_http: Option<String>,
    consul_api: Option<String>,
    dns: Option<String>,
    dns_ttl: Option<String>,
    profile: Option<String>,
    cluster_label: Option<String>,
    log_level: Option<String>,
    log_format: Option<String>,
    alert_hook: Option<String>,
    timings: Option<TimingsFile>,
    guard: Option<GuardFile>,
    trust: Option<TrustFile>,
    api_server: Option<ApiServerFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimingsFile {
    probe_period: Option<String>,
    probe_rtt: Option<String>,
    indirect_probes: Option<usize>,
    suspicion_mult: Option<f64>,
    gossip_interval: Option<String>,
    gossip_fanout: Option<usize>,
    announce_interval: Option<String>,
    announce_down_interval: Option<String>,
    sync_interval: Option<String>,
    tick: Option<String>,
    rejoin_min: Option<String>,
    rejoin_max: Option<String>,
    meta_fetch_after: Option<String>,
    reap_after: Option<String>,
    lifeguard: Option<bool>,
    lhm_max: Option<u8>,
    suspicion_max_mult: Option<f64>,
    suspicion_fast_confirmations: Option<usize>,
    suspicion_floor: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardFile {
    mode: Option<String>,
    stable_after: Option<String>,
    window: Option<String>,
    min_removals: Option<usize>,
    max_removal_ratio: Option<f64>,
    max_freeze: Option<String>,
    release_after_max_freeze: Option<bool>,
    drain_per_sec: Option<u32>,
    warming_sync: Option<String>,
    warming_timeout: Option<String>,
    snapshot_max_age: Option<String>,
    /// Per-service overrides: `[guard.services.NAME] fail_closed = true`.
    services: Option<BTreeMap<String, shoal_core::guard::ServiceGuard>>,
}

/// The `[trust]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    encrypt: Option<String>,
    insecure: Option<bool>,
    keyring_file: Option<PathBuf>,
    plaintext: Option<String>,
    replay_window: Option<String>,
    max_sessions: Option<usize>,
    api_token_file: Option<PathBuf>,
}

impl TrustFile {
    /// Values set in `hi` replace those of `self`.
    fn overlay(&mut self, hi: &TrustFile) {
        macro_rules! take {
            ($($f:ident),*) => { $( if hi.$f.is_some() { self.$f = hi.$f.clone(); } )* };
        }
        take!(
            encrypt,
            insecure,
            keyring_file,
            plaintext,
            replay_window,
            max_sessions,
            api_token_file
        );
    }
}

/// Encryption settings, resolved. The key itself is never printed or serialized.
#[derive(Clone, PartialEq, Serialize)]
pub struct TrustSettings {
    /// The `--encrypt` key (base64), if given.
    #[serde(skip)]
    pub encrypt: Option<String>,
    pub insecure: bool,
    /// Where the keyring persists (`<data-dir>/keyring` unless set).
    pub keyring_file: PathBuf,
    pub plaintext: shoal_core::trust::Plaintext,
    pub replay_window: Duration,
    pub max_sessions: usize,
    /// File holding the token API commands need (`--api-token-file`).
    pub api_token_file: Option<PathBuf>,
}

impl std::fmt::Debug for TrustSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustSettings")
            .field("encrypt", &self.encrypt.as_ref().map(|_| "<key>"))
            .field("insecure", &self.insecure)
            .field("keyring_file", &self.keyring_file)
            .field("plaintext", &self.plaintext)
            .field("replay_window", &self.replay_window)
            .field("max_sessions", &self.max_sessions)
            .field("api_token_file", &self.api_token_file)
            .finish()
    }
}

fn resolve_trust(t: &TrustFile, data_dir: &Path) -> Result<TrustSettings, ConfigError> {
    use shoal_core::trust::Plaintext;
    if let Some(k) = &t.encrypt {
        shoal_core::keyring::Key::parse(k).map_err(|e| invalid("trust.encrypt", e.to_string()))?;
    }
    let plaintext = match t.plaintext.as_deref() {
        None | Some("refuse") => Plaintext::Refuse,
        Some("accept") => Plaintext::Accept,
        Some("send") => Plaintext::Send,
        Some(p) => {
            return Err(invalid(
                "trust.plaintext",
                format!("{p:?}: use refuse, accept or send"),
            ))
        }
    };
    let replay_window = match &t.replay_window {
        Some(s) => parse_duration(s).map_err(|m| invalid("trust.replay_window", m))?,
        None => Duration::from_secs(60),
    };
    if replay_window < Duration::from_secs(5) || replay_window > Duration::from_secs(3600) {
        return Err(invalid(
            "trust.replay_window",
            "must be between 5s and 1h (it is also the clock skew tolerated between agents)",
        ));
    }
    let max_sessions = t.max_sessions.unwrap_or(4096);
    if !(16..=1_000_000).contains(&max_sessions) {
        return Err(invalid(
            "trust.max_sessions",
            "must be between 16 and 1000000",
        ));
    }
    let insecure = t.insecure.unwrap_or(false);
    if insecure && plaintext != Plaintext::Refuse {
        return Err(invalid(
            "trust.plaintext",
            "a plaintext transition needs a key; drop --insecure and give --encrypt",
        ));
    }
    Ok(TrustSettings {
        encrypt: t.encrypt.clone(),
        insecure,
        keyring_file: t
            .keyring_file
            .clone()
            .unwrap_or_else(|| data_dir.join("keyring")),
        plaintext,
        replay_window,
        max_sessions,
        api_token_file: t.api_token_file.clone(),
    })
}

/// One layer of raw values (file, environment or flags), before parsing.
#[derive(Debug, Default)]
struct Layer {
    name: Option<String>,
    bind: Option<String>,
    advertise: Option<String>,
    join: Option<Vec<String>>,
    tags: Option<Vec<(String, String)>>,
    services: Option<Vec<ServiceConfig>>,
    data_dir: Option<PathBuf>,
    api: Option<String>,
    api_http: Option<String>,
    consul_api: Option<String>,
    dns: Option<String>,
    dns_ttl: Option<String>,
    profile: Option<String>,
    cluster_label: Option<String>,
    log_level: Option<String>,
    log_format: Option<String>,
    alert_hook: Option<String>,
    guard_mode: Option<String>,
}

impl Layer {
    /// Values set in `hi` replace those of `self`.
    fn overlay(&mut self, hi: Layer) {
        macro_rules! take {
            ($($f:ident),*) => { $( if hi.$f.is_some() { self.$f = hi.$f; } )* };
        }
        take!(
            name,
            bind,
            advertise,
            join,
            tags,
            services,
            data_dir,
            api,
            api_http,
            consul_api,
            dns,
            dns_ttl,
            profile,
            cluster_label,
            log_level,
            log_format,
            alert_hook,
            guard_mode
        );
    }
}

/// The environment variables read (one per top-level scalar; `SHOAL_JOIN` is comma-separated).
pub const ENV_VARS: &[&str] = &[
    "SHOAL_NAME",
    "SHOAL_BIND",
    "SHOAL_ADVERTISE",
    "SHOAL_JOIN",
    "SHOAL_DATA_DIR",
    "SHOAL_API",
    "SHOAL_API_HTTP",
    "SHOAL_CONSUL_API",
    "SHOAL_DNS",
    "SHOAL_DNS_TTL",
    "SHOAL_PROFILE",
    "SHOAL_CLUSTER_LABEL",
    "SHOAL_LOG_LEVEL",
    "SHOAL_LOG_FORMAT",
    "SHOAL_ALERT_HOOK",
    "SHOAL_CONFIG",
];

fn env_layer(env: &dyn Fn(&str) -> Option<String>) -> Layer {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    Layer {
        name: get("SHOAL_NAME"),
        bind: get("SHOAL_BIND"),
        advertise: get("SHOAL_ADVERTISE"),
        join: get("SHOAL_JOIN").map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        }),
        data_dir: get("SHOAL_DATA_DIR").map(PathBuf::from),
        api: get("SHOAL_API"),
        api_http: get("SHOAL_API_HTTP"),
        consul_api: get("SHOAL_CONSUL_API"),
        dns: get("SHOAL_DNS"),
        dns_ttl: get("SHOAL_DNS_TTL"),
        profile: get("SHOAL_PROFILE"),
        cluster_label: env("SHOAL_CLUSTER_LABEL"),
        log_level: get("SHOAL_LOG_LEVEL"),
        log_format: get("SHOAL_LOG_FORMAT"),
        alert_hook: get("SHOAL_ALERT_HOOK"),
        ..Layer::default()
    }
}

fn flag_layer(args: &AgentArgs) -> Result<Layer, ConfigError> {
    let tags = if args.tags.is_empty() {
        None
    } else {
        Some(
            args.tags
                .iter()
                .map(|t| parse_tag(t).map_err(|m| invalid("--tag", m)))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    let services = if args.services.is_empty() {
        None
    } else {
        Some(
            args.services
                .iter()
                .map(|s| parse_service_flag(s).map_err(|m| invalid("--service", m)))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    Ok(Layer {
        name: args.name.clone(),
        bind: args.bind.clone(),
        advertise: args.advertise.clone(),
        join: (!args.join.is_empty()).then(|| args.join.clone()),
        tags,
        services,
        data_dir: args.data_dir.clone(),
        api: args.api.clone(),
        api_http: args.api_http.clone(),
        consul_api: args.consul_api.clone(),
        dns: args.dns.clone(),
        dns_ttl: None,
        profile: args.profile.map(|p| p.to_string()),
        cluster_label: args.cluster_label.clone(),
        log_level: args.log_level.clone(),
        log_format: args.log_format.map(|f| match f {
            LogFormat::Text => "text".to_string(),
            LogFormat::Json => "json".to_string(),
        }),
        alert_hook: None,
        guard_mode: args.guard_mode.map(|m| guard_mode_str(m).to_string()),
    })
}

fn guard_mode_str(m: GuardMode) -> &'static str {
    match m {
        GuardMode::Enforce => "enforce",
        GuardMode::Shadow => "shadow",
        GuardMode::Off => "off",
    }
}

/// Reads and parses a config file. Returns the top-level layer plus the two tables.
type FileTables = (Layer, TimingsFile, GuardFile, TrustFile, ApiServerFile);

fn file_layer(path: &Path) -> Result<FileTables, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file(&text).map_err(|message| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    })
}

fn parse_file(text: &str) -> Result<FileTables, String> {
    let f: FileConfig = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    let guard = f.guard.unwrap_or_default();
    let layer = Layer {
        name: f.name,
        bind: f.bind,
        advertise: f.advertise,
        join: f.join,
        tags: f.tags.map(|t| t.into_iter().collect()),
        services: f.services,
        data_dir: f.data_dir,
        api: f.api,
        api_http: f.api_http,
        consul_api: f.consul_api,
        dns: f.dns,
        dns_ttl: f.dns_ttl,
        profile: f.profile,
        cluster_label: f.cluster_label,
        log_level: f.log_level,
        log_format: f.log_format,
        alert_hook: f.alert_hook,
        guard_mode: guard.mode.clone(),
    };
    Ok((
        layer,
        f.timings.unwrap_or_default(),
        guard,
        f.trust.unwrap_or_default(),
        f.api_server.unwrap_or_default(),
    ))
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
        let config_file = args.config.clone().or_else(|| {
            env("SHOAL_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let mut layer = Layer::default();
        let (mut tfile, mut gfile) = (TimingsFile::default(), GuardFile::default());
        let mut trust = TrustFile::default();
        let mut api_server = ApiServerFile::default();
        if let Some(path) = &config_file {
            let (l, t, g, tr, a) = file_layer(path)?;
            layer = l;
            tfile = t;
            gfile = g;
            trust = tr;
            api_server = a;
        }
        layer.overlay(env_layer(env));
        layer.overlay(flag_layer(args)?);
        gfile.mode = layer.guard_mode.take();
        trust.overlay(&TrustFile {
            encrypt: args.encrypt.clone(),
            insecure: args.insecure.then_some(true),
            keyring_file: args.keyring_file.clone(),
            plaintext: args.plaintext.clone(),
            replay_window: None,
            max_sessions: None,
            api_token_file: args.api_token_file.clone(),
        });
        let mut cfg = resolve(layer, &tfile, &gfile, env)?;
        cfg.trust = resolve_trust(&trust, &cfg.data_dir)?;
        cfg.api_server = resolve_api_server(&api_server)?;
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
        }
    }

    /// The validated checks of every service that has some.
    pub fn service_checks(
        &self,
    ) -> Result<Vec<(String, Vec<crate::agent::checks::CheckDef>)>, crate::agent::checks::CheckError>
    {
        crate::agent::checks::resolve_services(
            self.services
                .iter()
                .map(|s| (s.name.as_str(), s.checks.as_slice())),
        )
    }

    /// This node's tags and services as the core's metadata.
    pub fn node_meta(&self) -> NodeMeta {
        NodeMeta {
            tags: self.tags.clone(),
            services: self
                .services
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
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
}

fn resolve(
    l: Layer,
    tfile: &TimingsFile,
    gfile: &GuardFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let name = match l.name {
        Some(n) => {
            validate_name(&n).map_err(|m| invalid("name", m))?;
            n
        }
        None => default_name(env),
    };
    let bind = match l.bind {
        Some(b) => parse_socket_addr(&b).map_err(|m| invalid("bind", m))?,
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_PORT),
    };
    let advertise = match l.advertise {
        Some(a) => {
            let a = parse_socket_addr(&a).map_err(|m| invalid("advertise", m))?;
            if a.ip().is_unspecified() {
                return Err(invalid(
                    "advertise",
                    format!("{a} is not an address other members can send to; give a specific IP"),
                ));
            }
            Some(a)
        }
        None => None,
    };
    let join = l.join.unwrap_or_default();
    for j in &join {
        check_seed(j).map_err(|m| invalid("join", m))?;
    }
    let tags: BTreeMap<String, String> = l.tags.unwrap_or_default().into_iter().collect();
    let services = l.services.unwrap_or_default();
    {
        let mut seen = std::collections::BTreeSet::new();
        for s in &services {
            if !seen.insert(s.name.as_str()) {
                return Err(invalid(
                    "services",
                    format!("service {:?} is listed twice", s.name),
                ));
            }
        }
        crate::agent::checks::resolve_services(
            services
                .iter()
                .map(|s| (s.name.as_str(), s.checks.as_slice())),
        )
        .map_err(|e| invalid("services.checks", e.to_string()))?;
    }
    let data_dir = l
        .data_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if data_dir.as_os_str().is_empty() {
        return Err(invalid("data_dir", "must not be empty"));
    }
    let api = match l.api {
        Some(a) => parse_api(&a).map_err(|m| invalid("api", m))?,
        None => data_dir.join("shoal.sock"),
    };
    let api_http = match l.api_http {
        Some(a) => {
            let s = a.strip_prefix("http://").unwrap_or(&a);
            let addr = parse_socket_addr(s).map_err(|m| invalid("api_http", m))?;
            if !addr.ip().is_loopback() {
                return Err(invalid(
                    "api_http",
                    format!("{addr} is not a loopback address; the API is local only (use 127.0.0.1:PORT or [::1]:PORT)"),
                ));
            }
            Some(addr)
        }
        None => None,
    };
    let consul_api = match l.consul_api {
        Some(a) => Some(loopback_addr("consul_api", &a)?),
        None => None,
    };
    let dns = match l.dns {
        Some(a) => Some(loopback_addr("dns", &a)?),
        None => None,
    };
    let dns_ttl = match l.dns_ttl {
        Some(t) => {
            let d = parse_duration(&t).map_err(|m| invalid("dns_ttl", m))?;
            if d.as_secs() > u64::from(u32::MAX >> 1) {
                return Err(invalid("dns_ttl", "is longer than DNS allows (2^31 - 1 s)"));
            }
            d
        }
        None => Duration::ZERO,
    };
    let profile = match l.profile.as_deref() {
        None => Profile::default(),
        Some("lan") => Profile::Lan,
        Some("wan") => Profile::Wan,
        Some("local") => Profile::Local,
        Some(p) => {
            return Err(invalid(
                "profile",
                format!("{p:?} is not a profile; use lan, wan or local"),
            ))
        }
    };
    let cluster_label = l.cluster_label.unwrap_or_default();
    if cluster_label.len() > MAX_LABEL_LEN {
        return Err(invalid(
            "cluster_label",
            format!(
                "is {} bytes; the limit is {MAX_LABEL_LEN}",
                cluster_label.len()
            ),
        ));
    }
    let log_level = l.log_level.unwrap_or_else(|| "info".to_string());
    tracing_subscriber::EnvFilter::try_new(&log_level).map_err(|e| {
        invalid(
            "log_level",
            format!("{log_level:?}: {e} (use error, warn, info, debug, trace or a filter like shoal=debug,warn)"),
        )
    })?;
    let log_format = match l.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(f) => {
            return Err(invalid(
                "log_format",
                format!("{f:?} is not a log format; use text or json"),
            ))
        }
    };
    let timings = apply_timings(profile.timings(), tfile)?;
    timings
        .validate()
        .map_err(|m| invalid(field_of(&m, "timings"), m))?;
    let guard = apply_guard(GuardConfig::default(), gfile)?;
    guard
        .validate()
        .map_err(|m| invalid(field_of(&m, "guard"), m))?;

    let meta = NodeMeta {
        tags: tags.clone(),
        services: services
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
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
    };
    meta.validate().map_err(|e| {
        let field = match e {
            shoal_core::MetaError::BadKey(_)
            | shoal_core::MetaError::ValueTooLong { .. }
            | shoal_core::MetaError::TooManyTags(_) => "tags",
            _ => "services",
        };
        invalid(field, e.to_string())
    })?;

    let detected_ip = if advertise.is_none() && bind.ip().is_unspecified() {
        match detect_ip(bind.ip(), &join) {
            Some(ip) => Some(ip),
            None => {
                return Err(invalid(
                    "advertise",
                    format!(
                        "bind is {bind} (all interfaces) and no address to advertise could be \
                         detected; pass --advertise IP:PORT with the address other members \
                         should use, or bind a specific IP"
                    ),
                ))
            }
        }
    } else {
        None
    };

    Ok(Config {
        name,
        bind,
        advertise,
        join,
        tags,
        services,
        data_dir,
        api,
        api_http,
        consul_api,
        dns,
        dns_ttl,
        profile,
        cluster_label,
        log_level,
        log_format,
        timings,
        guard,
        alert_hook: l.alert_hook,
        config_file: None,
        detected_ip,
        trust: resolve_trust(&TrustFile::default(), Path::new(""))?,
        api_server: ApiServerSettings::default(),
    })
}

/// The field a core validation message names ("timings.probe_rtt must ..."), or `table`.
fn field_of(message: &str, table: &str) -> String {
    message
        .split_whitespace()
        .next()
        .filter(|w| w.starts_with(&format!("{table}.")))
        .map(|w| w.trim_end_matches(',').to_string())
        .unwrap_or_else(|| table.to_string())
}

fn apply_timings(mut t: Timings, f: &TimingsFile) -> Result<Timings, ConfigError> {
    let d = |name: &str, v: &Option<String>, slot: &mut Duration| -> Result<(), ConfigError> {
        if let Some(s) = v {
            *slot = parse_duration(s).map_err(|m| invalid(format!("timings.{name}"), m))?;
        }
        Ok(())
    };
    d("probe_period", &f.probe_period, &mut t.probe_period)?;
    d("probe_rtt", &f.probe_rtt, &mut t.probe_rtt)?;
    d(
        "gossip_interval",
        &f.gossip_interval,
        &mut t.gossip_interval,
    )?;
    d(
        "announce_interval",
        &f.announce_interval,
        &mut t.announce_interval,
    )?;
    d(
        "announce_down_interval",
        &f.announce_down_interval,
        &mut t.announce_down_interval,
    )?;
    d("sync_interval", &f.sync_interval, &mut t.sync_interval)?;
    d("tick", &f.tick, &mut t.tick)?;
    d("rejoin_min", &f.rejoin_min, &mut t.rejoin_min)?;
    d("rejoin_max", &f.rejoin_max, &mut t.rejoin_max)?;
    d(
        "meta_fetch_after",
        &f.meta_fetch_after,
        &mut t.meta_fetch_after,
    )?;
    d("reap_after", &f.reap_after, &mut t.reap_after)?;
    if let Some(v) = f.indirect_probes {
        t.indirect_probes = v;
    }
    if let Some(v) = f.suspicion_mult {
        t.suspicion_mult = v;
    }
    if let Some(v) = f.lifeguard {
        t.lifeguard = v;
    }
    if let Some(v) = f.lhm_max {
        t.lhm_max = v;
    }
    if let Some(v) = f.suspicion_max_mult {
        t.suspicion_max_mult = v;
    }
    if let Some(v) = f.suspicion_fast_confirmations {
        t.suspicion_fast_confirmations = v;
    }
    if let Some(v) = f.suspicion_floor {
        t.suspicion_floor = v;
    }
    if let Some(v) = f.gossip_fanout {
        t.gossip_fanout = v;
    }
    Ok(t)
}

fn apply_guard(mut g: GuardConfig, f: &GuardFile) -> Result<GuardConfig, ConfigError> {
    let d = |name: &str, v: &Option<String>, slot: &mut Duration| -> Result<(), ConfigError> {
        if let Some(s) = v {
            *slot = parse_duration(s).map_err(|m| invalid(format!("guard.{name}"), m))?;
        }
        Ok(())
    };
    if let Some(m) = &f.mode {
        g.mode = match m.as_str() {
            "enforce" => GuardMode::Enforce,
            "shadow" => GuardMode::Shadow,
            "off" => GuardMode::Off,
            other => {
                return Err(invalid(
                    "guard.mode",
                    format!("{other:?} is not a guard mode; use enforce, shadow or off"),
                ))
            }
        };
    }
    d("stable_after", &f.stable_after, &mut g.stable_after)?;
    d("window", &f.window, &mut g.window)?;
    d("max_freeze", &f.max_freeze, &mut g.max_freeze)?;
    d("warming_sync", &f.warming_sync, &mut g.warming_sync)?;
    d(
        "warming_timeout",
        &f.warming_timeout,
        &mut g.warming_timeout,
    )?;
    d(
        "snapshot_max_age",
        &f.snapshot_max_age,
        &mut g.snapshot_max_age,
    )?;
    if let Some(v) = &f.services {
        g.services = v.clone();
    }
    if let Some(v) = f.min_removals {
        g.min_removals = v;
    }
    if let Some(v) = f.max_removal_ratio {
        g.max_removal_ratio = v;
    }
    if let Some(v) = f.release_after_max_freeze {
        g.release_after_max_freeze = v;
    }
    if let Some(v) = f.drain_per_sec {
        g.drain_per_sec = v;
    }
    Ok(g)
}

// ----- small parsers -----------------------------------------------------------------------

pub use shoal_core::duration::parse_duration;

/// `IP:PORT` (IPv6 as `[::1]:PORT`).
/// A loopback `IP:PORT` (`http://` accepted) for one of the optional local listeners.
fn loopback_addr(field: &str, a: &str) -> Result<SocketAddr, ConfigError> {
    let s = a.strip_prefix("http://").unwrap_or(a);
    let addr = parse_socket_addr(s).map_err(|m| invalid(field, m))?;
    if !addr.ip().is_loopback() {
        return Err(invalid(
            field,
            format!("{addr} is not a loopback address; this listener is local only (use 127.0.0.1:PORT or [::1]:PORT)"),
        ));
    }
    Ok(addr)
}

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse::<SocketAddr>()
        .map_err(|_| format!("{s:?} is not an IP:PORT address (for example 10.0.0.5:7946)"))
}

/// A seed: `IP:PORT`, `host:PORT`, or a bare IP or host (port 7946).
fn check_seed(s: &str) -> Result<(), String> {
    let t = s.trim();
    if t.parse::<SocketAddr>().is_ok() || t.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = match t.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (t, None),
    };
    let ok_host = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    let ok_port = port.is_none_or(|p| p.parse::<u16>().map(|p| p != 0).unwrap_or(false));
    if ok_host && ok_port {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a seed address; use IP:PORT or host:PORT (for example 10.0.0.5:7946)"
        ))
    }
}

/// Splits a seed into something `lookup_host` accepts, adding the default port if missing.
pub fn seed_with_port(s: &str) -> String {
    let t = s.trim();
    if t.parse::<SocketAddr>().is_ok() {
        return t.to_string();
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return SocketAddr::new(ip, DEFAULT_PORT).to_string();
    }
    if t.contains(':') {
        t.to_string()
    } else {
        format!("{t}:{DEFAULT_PORT}")
    }
}

fn parse_api(s: &str) -> Result<PathBuf, String> {
    let path = if let Some(p) = s.strip_prefix("unix:") {
        p
    } else if s.starts_with('/') {
        s
    } else {
        return Err(format!(
            "{s:?}: the agent's API listens on a Unix socket: write unix:/path/to/shoal.sock \
             (use --api-http for a loopback TCP address)"
        ));
    };
    if path.is_empty() {
        return Err("empty socket path; write unix:/path/to/shoal.sock".into());
    }
    Ok(PathBuf::from(path))
}

/// `key=value`.
fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not a tag; write key=value")),
    }
}

/// `name:port`.
fn parse_service_flag(s: &str) -> Result<ServiceConfig, String> {
    let err = || format!("{s:?} is not a service; write name:port (for example web:8080)");
    let (name, port) = s.rsplit_once(':').ok_or_else(err)?;
    let port: u16 = port.parse().map_err(|_| err())?;
    if name.is_empty() || port == 0 {
        return Err(err());
    }
    Ok(ServiceConfig {
        name: name.to_string(),
        port,
        tags: BTreeMap::new(),
        checks: Vec::new(),
    })
}

/// The host name, sanitized into a valid node name.
fn default_name(env: &dyn Fn(&str) -> Option<String>) -> String {
    let raw = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| env("HOSTNAME"))
        .unwrap_or_default();
    sanitize_name(&raw)
}

/// Replaces characters a node name cannot hold with '-', and bounds the length.
pub fn sanitize_name(raw: &str) -> String {
    let mut s: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME_LEN)
        .collect();
    if s.is_empty() {
        s = "shoal".to_string();
    }
    s
}

/// When binding all interfaces without `--advertise`, finds the local IP the kernel would use
/// to reach the first IP seed (or, failing that, the default route). A UDP `connect` sends
/// nothing: it only asks the routing table.
fn detect_ip(bind_ip: IpAddr, join: &[String]) -> Option<IpAddr> {
    let mut targets: Vec<SocketAddr> = join
        .iter()
        .filter_map(|j| seed_with_port(j).parse::<SocketAddr>().ok())
        .filter(|a| a.is_ipv4() == bind_ip.is_ipv4())
        .collect();
    targets.push(if bind_ip.is_ipv4() {
        SocketAddr::from(([192, 0, 2, 1], 9))
    } else {
        "[2001:db8::1]:9".parse().ok()?
    });
    for t in targets {
        let local = if bind_ip.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            "[::]:0".parse().ok()?
        };
        let Ok(sock) = UdpSocket::bind(local) else {
            continue;
        };
        if sock.connect(t).is_ok() {
            if let Ok(a) = sock.local_addr() {
                if !a.ip().is_unspecified() {
                    return Some(a.ip());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::collections::HashMap;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn args(v: &[&str]) -> AgentArgs {
        let mut all = vec!["shoal"];
        all.extend_from_slice(v);
        Cli::try_parse_from(all).expect("flags parse").agent
    }

    fn load(a: &AgentArgs, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with_env(a, &move |k| env.get(k).cloned())
    }

    fn field(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("expected an invalid field, got {other}"),
        }
    }

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let p = dir.path().join("shoal.toml");
        std::fs::write(&p, text).expect("write config");
        p
    }

    #[test]
    fn guard_table_reaches_every_guard_knob() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            r#"
            bind = "127.0.0.1:1000"
            [guard]
            snapshot_max_age = "10m"
            warming_timeout = "20s"
            warming_sync = "2s"
            [guard.services.leader]
            fail_closed = true
            "#,
        );
        let c = load(&args(&["--config", p.to_str().unwrap()]), &[]).unwrap();
        assert_eq!(c.guard.snapshot_max_age, Duration::from_secs(600));
        assert_eq!(c.guard.warming_timeout, Duration::from_secs(20));
        assert_eq!(c.guard.warming_sync, Duration::from_secs(2));
        assert!(c.guard.services["leader"].fail_closed);
        let bad = write(&dir, "[guard]\nwarming_sync = \"soon\"\n");
        let e = load(&args(&["--config", bad.to_str().unwrap()]), &[]).unwrap_err();
        assert_eq!(field(e), "guard.warming_sync");
    }

    #[test]
    fn defaults() {
        let c = load(&args(&["--bind", "127.0.0.1:7946"]), &[]).expect("loads");
        assert_eq!(c.bind, "127.0.0.1:7946".parse().unwrap());
        assert_eq!(c.advertise, None);
        assert_eq!(c.advertise_addr(), c.bind);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/shoal"));
        assert_eq!(c.api, PathBuf::from("/var/lib/shoal/shoal.sock"));
        assert_eq!(c.profile, Profile::Lan);
        assert_eq!(c.timings, Profile::Lan.timings());
        assert_eq!(c.guard, GuardConfig::default());
        assert_eq!(c.log_level, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(validate_name(&c.name).is_ok(), "default name {:?}", c.name);
        let nc = c.node_config();
        assert_eq!(nc.advertise, c.bind);
        assert_eq!(nc.name, c.name);
    }

    #[test]
    fn default_bind_is_all_interfaces_port_7946() {
        // Either an address was detected (there is a route) or it is refused clearly.
        match load(&args(&[]), &[]) {
            Ok(c) => {
                assert_eq!(c.bind, "0.0.0.0:7946".parse().unwrap());
                assert!(!c.advertise_addr().ip().is_unspecified());
                assert_eq!(c.advertise_addr().port(), 7946);
            }
            Err(e) => assert_eq!(field(e), "advertise"),
        }
        // With a loopback seed, the detected address is the loopback one.
        let c = load(&args(&["--join", "127.0.0.1:7000"]), &[]).expect("loads");
        assert!(c.advertise_addr().ip().is_loopback());
    }

    #[test]
    fn sanitized_host_name() {
        assert_eq!(sanitize_name("web 1.example.com"), "web-1.example.com");
        assert_eq!(sanitize_name(""), "shoal");
        assert_eq!(sanitize_name(&"x".repeat(100)).len(), MAX_NAME_LEN);
    }

    #[test]
    fn precedence_defaults_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            r#"
            name = "from-file"
            bind = "127.0.0.1:1000"
            data_dir = "/tmp/file"
            profile = "wan"
            log_level = "debug"
            tags = { role = "file", zone = "a" }
            [[services]]
            name = "web"
            port = 80
            [timings]
            probe_period = "6s"
            gossip_interval = "300ms"
            [guard]
            mode = "shadow"
            window = "5m"
            "#,
        );
        let p = p.to_str().unwrap().to_string();
        // File only.
        let c = load(&args(&["--config", &p]), &[]).unwrap();
        assert_eq!(c.name, "from-file");
        assert_eq!(c.bind.port(), 1000);
        assert_eq!(c.profile, Profile::Wan);
        assert_eq!(c.timings.probe_period, Duration::from_secs(6));
        assert_eq!(c.timings.gossip_interval, Duration::from_millis(300));
        // Fields not overridden keep the profile's value.
        assert_eq!(c.timings.probe_rtt, Profile::Wan.timings().probe_rtt);
        assert_eq!(c.guard.mode, GuardMode::Shadow);
        assert_eq!(c.guard.window, Duration::from_secs(300));
        assert_eq!(c.tags.get("role").map(String::as_str), Some("file"));
        assert_eq!(c.services.len(), 1);
        assert_eq!(c.api, PathBuf::from("/tmp/file/shoal.sock"));
        assert_eq!(c.config_file.as_deref(), Some(Path::new(&p)));
        // Env beats file.
        let env = [
            ("SHOAL_NAME", "from-env"),
            ("SHOAL_BIND", "127.0.0.1:2000"),
            ("SHOAL_LOG_LEVEL", "warn"),
        ];
        let c = load(&args(&["--config", &p]), &env).unwrap();
        assert_eq!(c.name, "from-env");
        assert_eq!(c.bind.port(), 2000);
        assert_eq!(c.log_level, "warn");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/file"));
        // Flags beat env and file.
        let c = load(
            &args(&[
                "--config",
                &p,
                "--name",
                "from-flag",
                "--tag",
                "role=flag",
                "--service",
                "db:5432",
                "--guard-mode",
                "off",
            ]),
            &env,
        )
        .unwrap();
        assert_eq!(c.name, "from-flag");
        assert_eq!(c.bind.port(), 2000);
        assert_eq!(c.tags.len(), 1, "flag tags replace the file's");
        assert_eq!(c.tags.get("role").map(String::as_str), Some("flag"));
        assert_eq!(c.services[0].name, "db");
        assert_eq!(c.services[0].port, 5432);
        assert_eq!(c.guard.mode, GuardMode::Off);
        // SHOAL_CONFIG names the file when --config is absent.
        let c = load(&args(&[]), &[("SHOAL_CONFIG", &p)]).unwrap();
        assert_eq!(c.name, "from-file");
    }

    #[test]
    fn the_packaged_config_file_loads() {
        let c = load(
            &args(&[
                "--config",
                "packaging/shoal.toml",
                "--name",
                "n1",
                "--advertise",
                "10.0.0.5:7946",
            ]),
            &[],
        )
        .expect("packaging/shoal.toml is valid");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/shoal"));
        assert_eq!(c.api, PathBuf::from("/var/lib/shoal/shoal.sock"));
        assert_eq!(c.bind.port(), DEFAULT_PORT);
    }

    #[test]
    fn consul_and_dns_listeners() {
        let c = load(&args(&[]), &[]).unwrap();
        assert_eq!(
            (c.consul_api, c.dns, c.dns_ttl),
            (None, None, Duration::ZERO)
        );
        let c = load(
            &args(&["--consul-api", "127.0.0.1:8500", "--dns", "127.0.0.1:8600"]),
            &[("SHOAL_DNS_TTL", "5s")],
        )
        .unwrap();
        assert_eq!(c.consul_api, Some("127.0.0.1:8500".parse().unwrap()));
        assert_eq!(c.dns, Some("127.0.0.1:8600".parse().unwrap()));
        assert_eq!(c.dns_ttl, Duration::from_secs(5));
        // The flags alone take the default addresses.
        let c = load(&args(&["--consul-api", "--dns"]), &[]).unwrap();
        assert_eq!(c.consul_api, Some("127.0.0.1:8500".parse().unwrap()));
        assert_eq!(c.dns, Some("127.0.0.1:8600".parse().unwrap()));
        let c = load(&args(&[]), &[("SHOAL_CONSUL_API", "[::1]:8500")]).unwrap();
        assert_eq!(c.consul_api, Some("[::1]:8500".parse().unwrap()));
        for (flag, field) in [("--consul-api", "consul_api"), ("--dns", "dns")] {
            let e = load(&args(&[flag, "10.0.0.1:8500"]), &[]).unwrap_err();
            assert!(e.to_string().contains(field), "{e}");
        }
        let e = load(&args(&[]), &[("SHOAL_DNS_TTL", "soon")]).unwrap_err();
        assert!(e.to_string().contains("dns_ttl"), "{e}");
    }

    #[test]
    fn the_contract_flags_parse() {
        let c = load(
            &args(&[
                "--name",
                "n1",
                "--bind",
                "127.0.0.2:7946",
                "--advertise",
                "10.0.0.2:7946",
                "--api",
                "unix:/tmp/n1.sock",
                "--api-http",
                "127.0.0.1:8500",
                "--join",
                "127.0.0.1:7946",
                "--join",
                "seed.example:7946",
                "--tag",
                "zone=a",
                "--tag",
                "rack=7",
                "--service",
                "web:8080",
                "--data-dir",
                "/tmp/n1",
                "--profile",
                "local",
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(c.name, "n1");
        assert_eq!(c.advertise_addr(), "10.0.0.2:7946".parse().unwrap());
        assert_eq!(c.api, PathBuf::from("/tmp/n1.sock"));
        assert_eq!(c.api_http, Some("127.0.0.1:8500".parse().unwrap()));
        assert_eq!(c.join.len(), 2);
        assert_eq!(c.tags.len(), 2);
        assert_eq!(c.profile, Profile::Local);
        assert_eq!(c.timings, Profile::Local.timings());
        let meta = c.node_meta();
        assert_eq!(meta.services["web"].port, 8080);
    }

    #[test]
    fn bad_values_are_refused_with_their_field() {
        let base = ["--bind", "127.0.0.1:7946"];
        let cases: &[(&[&str], &str)] = &[
            (&["--name", "bad name!"], "name"),
            (&["--bind", "nonsense"], "bind"),
            (&["--advertise", "0.0.0.0:7946"], "advertise"),
            (&["--advertise", "10.0.0.1"], "advertise"),
            (&["--join", "host:notaport"], "join"),
            (&["--join", "a b:7946"], "join"),
            (&["--tag", "novalue"], "--tag"),
            (&["--tag", "bad key=v"], "tags"),
            (&["--service", "web"], "--service"),
            (&["--service", "web:0"], "--service"),
            (&["--service", "bad name:80"], "services"),
            (&["--api", "tcp:1234"], "api"),
            (&["--api-http", "10.1.2.3:8080"], "api_http"),
            (&["--log-level", "shoal=notalevel"], "log_level"),
            (&["--cluster-label", &"x".repeat(65)], "cluster_label"),
        ];
        for (extra, want) in cases {
            let mut v: Vec<&str> = if extra.contains(&"--bind") {
                Vec::new()
            } else {
                base.to_vec()
            };
            v.extend_from_slice(extra);
            let e = load(&args(&v), &[]).expect_err(&format!("{extra:?} must be refused"));
            let msg = e.to_string();
            assert_eq!(field(e), *want, "{extra:?}: {msg}");
            assert!(msg.contains(want), "{msg}");
        }
        // Env values are checked the same way.
        let env_cases = [
            ("SHOAL_PROFILE", "fast", "profile"),
            ("SHOAL_LOG_FORMAT", "xml", "log_format"),
            ("SHOAL_BIND", "127.0.0.1", "bind"),
        ];
        for (k, v, want) in env_cases {
            let e = load(&args(&[]), &[(k, v)]).expect_err(k);
            assert_eq!(field(e), want);
        }
    }

    #[test]
    fn bad_file_values_are_refused_with_their_field() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("[timings]\nprobe_period = \"fast\"\n", "timings.probe_period"),
            (
                "[timings]\nprobe_period = \"100ms\"\nprobe_rtt = \"200ms\"\n",
                "timings.probe_rtt",
            ),
            ("[timings]\nsuspicion_mult = 0.5\n", "timings.suspicion_mult"),
            ("[guard]\nmax_removal_ratio = 1.5\n", "guard.max_removal_ratio"),
            ("[guard]\nmode = \"maybe\"\n", "guard.mode"),
            ("[guard]\nwindow = \"0s\"\n", "guard.window"),
            ("profile = \"fast\"\n", "profile"),
            (
                "[[services]]\nname = \"web\"\nport = 80\n[[services]]\nname = \"web\"\nport = 81\n",
                "services",
            ),
        ];
        for (text, want) in cases {
            let p = write(&dir, &format!("bind = \"127.0.0.1:1\"\n{text}"));
            let a = AgentArgs {
                config: Some(p),
                ..Default::default()
            };
            let e = load(&a, &[]).expect_err(text);
            let msg = e.to_string();
            assert_eq!(field(e), want, "{text}: {msg}");
        }
        // Unknown keys and wrong types: a parse error that names the key.
        for (text, key) in [
            ("bnid = \"127.0.0.1:1\"\n", "bnid"),
            ("[timings]\nprobe_perod = \"1s\"\n", "probe_perod"),
            ("[guard]\nmin_removals = \"two\"\n", "min_removals"),
        ] {
            let p = write(&dir, text);
            let a = AgentArgs {
                config: Some(p),
                ..Default::default()
            };
            let e = load(&a, &[]).expect_err(text);
            assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn unreadable_file_is_a_clear_error() {
        let a = AgentArgs {
            config: Some(PathBuf::from("/nonexistent/shoal.toml")),
            ..Default::default()
        };
        let e = load(&a, &[]).expect_err("missing file");
        let msg = e.to_string();
        assert!(
            msg.contains("cannot read config file /nonexistent/shoal.toml"),
            "{msg}"
        );
        assert!(msg.contains("No such file"), "{msg}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "5", "ms", "5x", "1..5s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn seeds_get_a_default_port() {
        assert_eq!(seed_with_port("10.0.0.1"), "10.0.0.1:7946");
        assert_eq!(seed_with_port("seed.local"), "seed.local:7946");
        assert_eq!(seed_with_port("seed.local:8000"), "seed.local:8000");
        assert_eq!(seed_with_port("[::1]:8000"), "[::1]:8000");
    }
}
