//! Every configuration key, declared once: its TOML path, environment variable, `shoal agent`
//! flag, types, parser, range, default and one-line doc. The file, environment and flag
//! sources, `AgentArgs` and the reference (docs/configuration.md) is checked against all come from this table
//! (the generator is table.rs).
//!
//! Must not resolve anything: defaults that depend on other keys and rules between keys live in
//! validate.rs. Names are contracts: add a key, never rename one.
//!
//! Rows are in the order of `shoal agent --help` (the flags' order). Timings default to the
//! `lan` profile's values shown here; the `profile` key picks other ones.

use super::convert::{from_env, from_flag};
use super::parse::{self, check_range, parse_duration};
use super::{invalid, ConfigError, LogFormat, ServiceConfig};
use shoal_core::Plaintext;
use shoal_core::ServiceGuard;
use shoal_core::{GuardMode, Profile};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One key, as the reference shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// `name` at the top level, `table.name` in a table.
    pub path: &'static str,
    /// The environment variable that sets it, if any.
    pub env: Option<&'static str>,
    /// The `shoal agent` flag that sets it (`--name`), if any.
    pub flag: Option<&'static str>,
    /// The Rust type it resolves to.
    pub value_type: &'static str,
    /// The inclusive range the agent checks, as written in the table.
    pub range: Option<&'static str>,
    /// The default, as a TOML value.
    pub default: Option<&'static str>,
    /// The default, in words (it depends on other keys or the host).
    pub default_is: Option<&'static str>,
    pub doc: &'static str,
    /// False for a key that only the environment and flags give (`config`).
    pub in_file: bool,
}

/// Every key, the top level first.
pub fn all() -> impl Iterator<Item = &'static Key> {
    SECTIONS.iter().flat_map(|s| s.iter())
}

config_keys! {
    root {
        /// Node name, unique in the cluster [default: host name]
        name: String => String = parse::name {
            env: "SHOAL_NAME" from_env::text,
            flag: "name" name: Option<String> = from_flag::opt [value_name = "NAME"],
            default_is: "the host name",
        }
        /// UDP address to bind [default: 0.0.0.0:7946]
        bind: String => SocketAddr = parse::socket_addr {
            env: "SHOAL_BIND" from_env::text,
            flag: "bind" bind: Option<String> = from_flag::opt [value_name = "IP:PORT"],
            default: "0.0.0.0:7946",
        }
        /// Address other members use to reach this node [default: the bind address]
        advertise: String => SocketAddr = parse::advertise {
            env: "SHOAL_ADVERTISE" from_env::text,
            flag: "advertise" advertise: Option<String> = from_flag::opt [value_name = "IP:PORT"],
            default_is: "bind (or the route to the first seed if bind is 0.0.0.0)",
        }
        /// Local API socket [default: unix:<data-dir>/shoal.sock]
        api: String => PathBuf = parse::api {
            env: "SHOAL_API" from_env::text,
            flag: "api" api: Option<String> = from_flag::opt [value_name = "unix:PATH"],
            default_is: "unix:<data_dir>/shoal.sock",
        }
        /// Also serve the local API on this TCP address (loopback unless listen_remote)
        api_http: String => SocketAddr = parse::listen_addr {
            env: "SHOAL_API_HTTP" from_env::text,
            flag: "api-http" api_http: Option<String> = from_flag::opt [
                value_name = "127.0.0.1:PORT"
            ],
            default_is: "off",
        }
        /// Serve a Consul-compatible read API on this TCP address (loopback unless listen_remote) [alone: 127.0.0.1:8500]
        consul_api: String => SocketAddr = parse::listen_addr {
            env: "SHOAL_CONSUL_API" from_env::text,
            flag: "consul-api" consul_api: Option<String> = from_flag::opt [
                value_name = "127.0.0.1:PORT",
                num_args = 0..=1,
                default_missing_value = "127.0.0.1:8500"
            ],
            default_is: "off",
        }
        /// Serve DNS (zone `shoal.`, UDP and TCP) on this address (loopback unless listen_remote) [alone: 127.0.0.1:8600]
        dns: String => SocketAddr = parse::listen_addr {
            env: "SHOAL_DNS" from_env::text,
            flag: "dns" dns: Option<String> = from_flag::opt [
                value_name = "127.0.0.1:PORT",
                num_args = 0..=1,
                default_missing_value = "127.0.0.1:8600"
            ],
            default_is: "off",
        }
        /// Let --api-http, --consul-api and --dns listen on non-loopback addresses: reads open to whoever reaches them, API commands need --api-token-file
        listen_remote: bool => bool = parse::same {
            flag: "listen-remote" listen_remote: bool = from_flag::switch [],
            default: false,
        }
        /// Seed to join (repeatable)
        join: Vec<String> => Vec<String> = parse::seeds {
            env: "SHOAL_JOIN" from_env::list,
            flag: "join" join: Vec<String> = from_flag::list [value_name = "IP:PORT"],
            default: [],
        }
        /// Tag of this node (repeatable)
        tags: BTreeMap<String, String> => BTreeMap<String, String> = parse::same {
            flag: "tag" tags: Vec<String> = from_flag::tags [value_name = "key=value"],
            default: {},
        }
        /// Service offered by this node (repeatable)
        services: Vec<ServiceConfig> => Vec<ServiceConfig> = parse::same {
            flag: "service" services: Vec<String> = from_flag::services [value_name = "name:port"],
            default: [],
        }
        /// Data directory [default: /var/lib/shoal]
        data_dir: PathBuf => PathBuf = parse::data_dir {
            env: "SHOAL_DATA_DIR" from_env::text,
            flag: "data-dir" data_dir: Option<PathBuf> = from_flag::opt [value_name = "DIR"],
            default: "/var/lib/shoal",
        }
        /// TOML config file (SHOAL_* variables and flags override it)
        config (cli): PathBuf => PathBuf = parse::same {
            env: "SHOAL_CONFIG" from_env::nonempty,
            flag: "config" config: Option<PathBuf> = from_flag::opt [value_name = "FILE"],
            default_is: "none",
        }
        /// Timing profile [default: lan]
        profile: String => Profile = parse::profile {
            env: "SHOAL_PROFILE" from_env::text,
            flag: "profile" profile: Option<Profile> = from_flag::shown [
                value_parser = crate::core_args::profile()
            ],
            default: "lan",
        }
        /// Cluster label: datagrams with another label are dropped
        cluster_label: String => String = parse::cluster_label {
            env: "SHOAL_CLUSTER_LABEL" from_env::keep,
            flag: "cluster-label" cluster_label: Option<String> = from_flag::opt [
                value_name = "LABEL"
            ],
            default: "",
        }
        /// Log filter (`info`, `debug`, `shoal=debug,warn`) [default: info]
        log_level: String => String = parse::log_level {
            env: "SHOAL_LOG_LEVEL" from_env::text,
            flag: "log-level" log_level: Option<String> = from_flag::opt [value_name = "LEVEL"],
            default: "info",
        }
        /// Log format [default: text]
        log_format: String => LogFormat = parse::log_format {
            env: "SHOAL_LOG_FORMAT" from_env::text,
            flag: "log-format" log_format: Option<LogFormat> = from_flag::shown [value_enum],
            default: "text",
        }
        /// TTL of DNS answers (0: clients ask again each time)
        dns_ttl: String => Duration = parse_duration {
            env: "SHOAL_DNS_TTL" from_env::text,
            range: (Duration::ZERO, Duration::from_secs(u32::MAX as u64 >> 1)),
            default: "0s",
        }
        /// DNS zone answered (Consul's `domain`: `consul.` lets resolvers that forward `consul.` ask shoal)
        dns_domain: String => String = parse::dns_domain {
            env: "SHOAL_DNS_DOMAIN" from_env::text,
            flag: "dns-domain" dns_domain: Option<String> = from_flag::opt [value_name = "ZONE"],
            default: "shoal.",
        }
        /// Command run with the details when the guard changes state
        alert_hook: String => String = parse::same {
            env: "SHOAL_ALERT_HOOK" from_env::text,
            default_is: "none",
        }
        /// SIGTERM announces a restart: peers serve this node `restarting` this long before it counts as failed
        restart_grace: String => Duration = parse_duration {
            env: "SHOAL_RESTART_GRACE" from_env::text,
            range: (Duration::from_secs(1), Duration::from_secs(3600)),
            default: "60s",
        }
        /// SIGTERM leaves the cluster (a decommission) instead of announcing a restart
        leave_on_terminate: bool => bool = parse::same {
            flag: "leave-on-terminate" leave_on_terminate: bool = from_flag::switch [],
            default: false,
        }
        /// Exec checks may be registered through the local API (off: only the config file runs commands)
        enable_api_exec_checks: bool => bool = parse::same {
            default: false,
        }
        /// Most members this agent holds (alive, suspect or down until forgotten); past it, unknown members are refused and counted
        max_members: usize => usize = parse::same {
            range: (16, 10_000_000),
            default: 100000,
        }
        /// Largest payload of a user event or query this agent sends, in bytes
        event_payload_max: usize => usize = parse::same {
            range: (1, 1024),
            default: 512,
        }
        /// Largest answer this agent sends to a query, in bytes (a handler's longer output is cut)
        query_answer_max: usize => usize = parse::same {
            range: (1, 1024),
            default: 1024,
        }
        /// Event handlers, `TYPE[:NAME]=COMMAND` (config file only; docs/events.md)
        event_handlers: Vec<String> => Vec<String> = parse::event_handlers {
            default: [],
        }
        /// A handler running longer is killed (and counted)
        handler_timeout: String => Duration = parse_duration {
            range: (Duration::from_millis(100), Duration::from_secs(3600)),
            default: "30s",
        }
        /// Events arriving within this quiet time of each other go to one handler run
        handler_coalesce: String => Duration = parse_duration {
            range: (Duration::ZERO, Duration::from_secs(60)),
            default: "500ms",
        }
    }

    [guard] => shoal_core::GuardConfig {
        /// Guard mode [default: enforce]
        mode: String => GuardMode = parse::guard_mode {
            flag: "guard-mode" guard_mode: Option<GuardMode> = from_flag::guard_mode [
                value_parser = crate::core_args::guard_mode()
            ],
            default: "enforce",
        }
        /// A peer down this long (guard normal) leaves the baseline
        stable_after: String => Duration = parse_duration { default: "30s", }
        /// Failures of baseline members are counted within this sliding window
        window: String => Duration = parse_duration { default: "60s", }
        /// Trip when more than max(min_removals, max_removal_ratio x baseline) fail
        min_removals: usize => usize = parse::same { default: 2, }
        /// See min_removals
        max_removal_ratio: f64 => f64 = parse::same { default: 0.4, }
        /// After this long frozen or isolated, the alert escalates
        max_freeze: String => Duration = parse_duration { default: "1h", }
        /// Release held members after max_freeze instead of only escalating
        release_after_max_freeze: bool => bool = parse::same { default: false, }
        /// Held members released per second when the guard thaws
        drain_per_sec: u32 => u32 = parse::same { default: 5, }
        /// A restarted agent asks for a sync this often while warming
        warming_sync: String => Duration = parse_duration { default: "5s", }
        /// A restarted agent serves its saved view as warming at most this long
        warming_timeout: String => Duration = parse_duration { default: "60s", }
        /// A saved view older than this is not served at restart
        snapshot_max_age: String => Duration = parse_duration { default: "1h", }
        /// Per-service overrides: `[guard.services.NAME] fail_closed = true`
        services: BTreeMap<String, ServiceGuard> => BTreeMap<String, ServiceGuard> = parse::same {
            default: {},
        }
        /// Flap damping: a member that keeps failing and coming back is served damped
        damping: bool => bool = parse::same { default: true, }
        /// The damping penalty (1000 per flap) halves in this long
        damping_half_life: String => Duration = parse_duration { default: "60s", }
        /// Served damped once the penalty reaches this
        damping_suppress: f64 => f64 = parse::same { default: 600.0, }
        /// Served again once the penalty decays below this
        damping_reuse: f64 => f64 = parse::same { default: 300.0, }
        /// The penalty never grows past this
        damping_max_penalty: f64 => f64 = parse::same { default: 3000.0, }
        /// Back this long without failing (penalty under damping_suppress): served again
        damping_probation: String => Duration = parse_duration { default: "30s", }
        /// Gray failures: serve down a member most of several observers cannot reach
        gray: bool => bool = parse::same { default: true, }
        /// Probe outcomes and observers' reports count within this window
        gray_window: String => Duration = parse_duration { default: "30s", }
        /// An observer counts when this share of its probes of the member failed
        gray_failure_ratio: f64 => f64 = parse::same { default: 0.5, }
        /// Fewest observers that must agree (a third of the members, up to 8)
        gray_observers: usize => usize = parse::same { default: 3, }
        /// A removed member returns after this long with few observers failing
        gray_stable_after: String => Duration = parse_duration { default: "30s", }
    }

    [outlier] => shoal_core::OutlierConfig {
        /// Outcomes apps report are counted over this sliding window
        window: String => Duration = parse_duration { default: "30s", }
        /// An instance with fewer reported calls in the window is never ejected
        min_requests: u64 => u64 = parse::same { default: 20, }
        /// Eject when (errors + timeouts) / calls in the window reach this
        error_ratio: f64 => f64 = parse::same { default: 0.5, }
        /// The first ejection lasts this long, the n-th n times as long
        base_ejection_time: String => Duration = parse_duration { default: "30s", }
        /// No ejection lasts longer than this
        max_ejection_time: String => Duration = parse_duration { default: "5m", }
        /// At most this share of a service's instances is ejected at once (0: never eject)
        max_ejection_ratio: f64 => f64 = parse::same { default: 0.5, }
    }

    [trust] {
        /// Cluster key (base64 of 32 bytes, from `shoal keygen`): seeds the keyring
        encrypt: String => String = parse::key {
            env: "SHOAL_ENCRYPT" from_env::text,
            flag: "encrypt" encrypt: Option<String> = from_flag::opt [
                value_name = "KEY",
                env = "SHOAL_ENCRYPT",
                hide_env_values = true
            ],
            default_is: "none (the keyring file, or --insecure)",
        }
        /// File holding the cluster key, as --encrypt takes it (a secret mounted as a file)
        encrypt_file: PathBuf => PathBuf = parse::same {
            env: "SHOAL_ENCRYPT_FILE" from_env::nonempty,
            flag: "encrypt-file" encrypt_file: Option<PathBuf> = from_flag::opt [
                value_name = "FILE"
            ],
            default_is: "none",
        }
        /// Run without encryption (anyone who can send a datagram can speak for any node)
        insecure: bool => bool = parse::same {
            flag: "insecure" insecure: bool = from_flag::switch [],
            default: false,
        }
        /// Keyring file [default: <data-dir>/keyring]
        keyring_file: PathBuf => PathBuf = parse::same {
            flag: "keyring-file" keyring_file: Option<PathBuf> = from_flag::opt [
                value_name = "FILE"
            ],
            default_is: "<data_dir>/keyring",
        }
        /// Transition to encryption: `send` (send plaintext, accept both) or `accept` (seal, accept both) [default: refuse plaintext]
        plaintext: String => Plaintext = parse::plaintext {
            flag: "plaintext" plaintext: Option<String> = from_flag::opt [
                value_name = "refuse|accept|send"
            ],
            default: "refuse",
        }
        /// Clock skew past which datagrams are counted as skewed (accepted) and operator commands refused; how much older than a sender's live session a new one may be
        replay_window: String => Duration = parse_duration {
            range: (Duration::from_secs(5), Duration::from_secs(3600)),
            default: "60s",
        }
        /// Sender sessions tracked against replays (at most 4 per source address)
        max_sessions: usize => usize = parse::same {
            range: (16, 1_000_000),
            default: 4096,
        }
        /// API commands (tags, services, join, leave, guard, keys) need the token in this file
        api_token_file: PathBuf => PathBuf = parse::same {
            flag: "api-token-file" api_token_file: Option<PathBuf> = from_flag::opt [
                value_name = "FILE"
            ],
            default_is: "none",
        }
    }

    [timings] => shoal_core::Timings {
        /// How often a member is probed
        probe_period: String => Duration = parse_duration { default: "1s", }
        /// How long a probe waits for its answer
        probe_rtt: String => Duration = parse_duration { default: "500ms", }
        /// Members asked to probe indirectly when a probe fails
        indirect_probes: usize => usize = parse::same { default: 3, }
        /// Suspicion = mult x max(1, log10 N) x probe_period
        suspicion_mult: f64 => f64 = parse::same { default: 4.0, }
        /// How often updates are gossiped
        gossip_interval: String => Duration = parse_duration { default: "200ms", }
        /// Members each gossip round goes to
        gossip_fanout: usize => usize = parse::same { default: 3, }
        /// Ask a random member for more members this often
        announce_interval: String => Duration = parse_duration { default: "30s", }
        /// Try members believed down this often (heals partitions)
        announce_down_interval: String => Duration = parse_duration { default: "15s", }
        /// Anti-entropy round (metadata digest + membership filter)
        sync_interval: String => Duration = parse_duration { default: "10s", }
        /// The core's housekeeping period
        tick: String => Duration = parse_duration { default: "250ms", }
        /// Re-announce backoff when cut off starts here and doubles
        rejoin_min: String => Duration = parse_duration { default: "1s", }
        /// Re-announce backoff limit
        rejoin_max: String => Duration = parse_duration { default: "30s", }
        /// Ask a member directly for metadata we still lack after this long
        meta_fetch_after: String => Duration = parse_duration { default: "2s", }
        /// Forget down/left members after this long
        reap_after: String => Duration = parse_duration { default: "24h", }
        /// Lifeguard (local health, adaptive suspicion)
        lifeguard: bool => bool = parse::same { default: true, }
        /// Local health: probes stretch up to (lhm_max + 1) x
        lhm_max: u8 => u8 = parse::same { default: 8, }
        /// An unconfirmed suspicion lasts up to this many suspicion timeouts
        suspicion_max_mult: f64 => f64 = parse::same { default: 6.0, }
        /// More than 0: this many confirmations shrink a suspicion below the timeout
        suspicion_fast_confirmations: usize => usize = parse::same { default: 5, }
        /// The share of the timeout a fully confirmed suspicion lasts
        suspicion_floor: f64 => f64 = parse::same { default: 0.5, }
    }

    [api_server] {
        /// Mode of the API socket: 06x0 (owner read/write kept, never "other")
        socket_mode: String => String = parse::same {
            default_is: "0600 (0660 with a socket_group)",
        }
        /// Group name or gid given the API socket
        socket_group: String => String = parse::same { default_is: "none", }
        /// Connections per HTTP listener; past it: 503 and close
        max_connections: usize => usize = parse::same { default: 512, }
        /// /v1/watch streams at once; past it: 503
        max_watches: usize => usize = parse::same { default: 128, }
        /// A request head must arrive within this of its first byte
        header_timeout: String => Duration = parse_duration { default: "10s", }
        /// A connection with no request in progress is closed after this
        idle_timeout: String => Duration = parse_duration { default: "60s", }
    }
}

/// The environment variables read, in table order.
pub fn env_vars() -> impl Iterator<Item = &'static str> {
    all().filter_map(|k| k.env)
}
