//! From the parsed values of every key to a `Config`: the defaults that depend on other keys
//! or on the host (the node name, the API socket and keyring under the data directory, the
//! advertised address, the profile's timings), and the rules between keys (services listed
//! twice, metadata limits, core timings and guard checks, plaintext without a key, listeners
//! for other hosts only with `listen_remote` and the local API's only with a token).
//!
//! Must not read any source (sources.rs does) nor parse a single value (the table's parsers
//! do); every error names the key it is about.

use super::keys::{api_server, root, trust};
use super::limits::{ApiLimits, SocketAccess};
use super::parse::{default_name, detect_ip};
use super::{
    invalid, meta_of, ApiServerSettings, Config, ConfigError, ServiceConfig, TrustSettings,
    DEFAULT_DATA_DIR, DEFAULT_PORT,
};
use shoal_core::GuardConfig;
use shoal_core::Plaintext;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration the values give (`config_file` left unset).
pub(super) fn resolve(
    v: root::Values,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let name = v.name.unwrap_or_else(|| default_name(env));
    let bind = v.bind.unwrap_or(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        DEFAULT_PORT,
    ));
    let join = v.join.unwrap_or_default();
    let tags = v.tags.unwrap_or_default();
    let services = v.services.unwrap_or_default();
    check_services(&services)?;
    let data_dir = v
        .data_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let api = v.api.unwrap_or_else(|| data_dir.join("shoal.sock"));
    let profile = v.profile.unwrap_or_default();
    let mut timings = profile.timings();
    v.timings.apply(&mut timings);
    timings
        .validate()
        .map_err(|m| invalid(field_of(&m, "timings"), m))?;
    let mut guard = GuardConfig::default();
    v.guard.apply(&mut guard);
    guard
        .validate()
        .map_err(|m| invalid(field_of(&m, "guard"), m))?;
    let mut outlier = shoal_core::OutlierConfig::default();
    v.outlier.apply(&mut outlier);
    outlier
        .validate()
        .map_err(|m| invalid(field_of(&m, "outlier"), m))?;
    meta_of(&tags, &services).validate().map_err(|e| {
        let field = match e {
            shoal_core::MetaError::BadKey(_)
            | shoal_core::MetaError::ValueTooLong { .. }
            | shoal_core::MetaError::TooManyTags(_) => "tags",
            _ => "services",
        };
        invalid(field, e.to_string())
    })?;
    let detected_ip = if v.advertise.is_none() && bind.ip().is_unspecified() {
        Some(detect_ip(bind.ip(), &join).ok_or_else(|| {
            invalid(
                "advertise",
                format!(
                    "bind is {bind} (all interfaces) and no address to advertise could be \
                     detected; pass --advertise IP:PORT with the address other members \
                     should use, or bind a specific IP"
                ),
            )
        })?)
    } else {
        None
    };
    let trust = resolve_trust(v.trust, &data_dir)?;
    let api_server = resolve_api_server(v.api_server)?;
    let listen_remote = v.listen_remote.unwrap_or(false);
    check_listeners(
        listen_remote,
        [
            ("api_http", v.api_http),
            ("consul_api", v.consul_api),
            ("dns", v.dns),
        ],
        trust.api_token_file.is_some(),
    )?;
    Ok(Config {
        name,
        bind,
        advertise: v.advertise,
        join,
        tags,
        services,
        data_dir,
        api,
        api_http: v.api_http,
        consul_api: v.consul_api,
        dns: v.dns,
        listen_remote,
        dns_ttl: v.dns_ttl.unwrap_or(Duration::ZERO),
        dns_domain: v
            .dns_domain
            .unwrap_or_else(|| crate::dns::answer::ZONE.to_string()),
        profile,
        cluster_label: v.cluster_label.unwrap_or_default(),
        log_level: v.log_level.unwrap_or_else(|| "info".to_string()),
        log_format: v.log_format.unwrap_or_default(),
        timings,
        guard,
        outlier,
        alert_hook: v.alert_hook,
        event_payload_max: v
            .event_payload_max
            .unwrap_or(shoal_core::DEFAULT_PAYLOAD_MAX),
        query_answer_max: v.query_answer_max.unwrap_or(shoal_core::DEFAULT_ANSWER_MAX),
        event_handlers: v
            .event_handlers
            .unwrap_or_default()
            .iter()
            .map(|h| super::handlers::HandlerSpec::parse(h))
            .collect::<Result<_, _>>()
            .map_err(|e| invalid("event_handlers", e))?,
        handler_timeout: v.handler_timeout.unwrap_or(Duration::from_secs(30)),
        handler_coalesce: v.handler_coalesce.unwrap_or(Duration::from_millis(500)),
        restart_grace: v.restart_grace.unwrap_or(Duration::from_secs(60)),
        leave_on_terminate: v.leave_on_terminate.unwrap_or(false),
        enable_api_exec_checks: v.enable_api_exec_checks.unwrap_or(false),
        max_members: v.max_members.unwrap_or(shoal_core::DEFAULT_MAX_MEMBERS),
        clock_offset_ms: crate::agent::clock::WallClock::test_offset_from_env(),
        config_file: None,
        detected_ip,
        trust,
        api_server,
    })
}

/// Each service once, and its health checks valid.
fn check_services(services: &[ServiceConfig]) -> Result<(), ConfigError> {
    let mut seen = BTreeSet::new();
    for s in services {
        if !seen.insert(s.instance_id()) {
            return Err(invalid(
                "services",
                format!(
                    "service instance {:?} is listed twice: give each instance of a service \
                     its own id",
                    s.instance_id()
                ),
            ));
        }
    }
    super::checks::resolve_services(
        services
            .iter()
            .map(|s| (s.instance_id(), s.checks.as_slice())),
    )
    .map_err(|e| invalid("services.checks", e.to_string()))?;
    Ok(())
}

/// A listener on a non-loopback address only when the operator asked (`listen_remote`), and
/// the local API on TCP for other hosts only behind the API token: its commands (tags,
/// services, leave, guard, keys) must not be open to whoever reaches the address.
fn check_listeners(
    listen_remote: bool,
    listeners: [(&str, Option<SocketAddr>); 3],
    has_token: bool,
) -> Result<(), ConfigError> {
    for (key, addr) in listeners {
        let Some(addr) = addr else { continue };
        if !listen_remote && !addr.ip().is_loopback() {
            return Err(invalid(
                key,
                format!(
                    "{addr} is not a loopback address; this listener serves this host only \
                     (127.0.0.1:PORT or [::1]:PORT) unless you set listen_remote = true \
                     (--listen-remote) to serve other hosts"
                ),
            ));
        }
        if listen_remote && key == "api_http" && !has_token {
            return Err(invalid(
                "trust.api_token_file",
                format!(
                    "listen_remote serves the local API on {addr} to other hosts: its commands \
                     need a token, give api_token_file (--api-token-file FILE)"
                ),
            ));
        }
    }
    Ok(())
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

fn resolve_trust(t: trust::Values, data_dir: &Path) -> Result<TrustSettings, ConfigError> {
    let plaintext = t.plaintext.unwrap_or(Plaintext::Refuse);
    let insecure = t.insecure.unwrap_or(false);
    if insecure && plaintext != Plaintext::Refuse {
        return Err(invalid(
            "trust.plaintext",
            "a plaintext transition needs a key; drop --insecure and give --encrypt",
        ));
    }
    if t.encrypt_file.is_some() && (t.encrypt.is_some() || insecure) {
        return Err(invalid(
            "trust.encrypt_file",
            "give the key one way: encrypt_file, encrypt or (without a key) insecure",
        ));
    }
    Ok(TrustSettings {
        encrypt: t.encrypt,
        encrypt_file: t.encrypt_file,
        insecure,
        keyring_file: t.keyring_file.unwrap_or_else(|| data_dir.join("keyring")),
        plaintext,
        replay_window: t.replay_window.unwrap_or(Duration::from_secs(60)),
        max_sessions: t.max_sessions.unwrap_or(4096),
        api_token_file: t.api_token_file,
    })
}

fn resolve_api_server(a: api_server::Values) -> Result<ApiServerSettings, ConfigError> {
    let socket = SocketAccess::parse(a.socket_mode.as_deref(), a.socket_group.as_deref())
        .map_err(|m| invalid("api_server.socket", m))?;
    let d = ApiLimits::default();
    let limits = ApiLimits {
        max_connections: a.max_connections.unwrap_or(d.max_connections),
        max_watches: a.max_watches.unwrap_or(d.max_watches),
        header_timeout: a.header_timeout.unwrap_or(d.header_timeout),
        idle_timeout: a.idle_timeout.unwrap_or(d.idle_timeout),
    };
    limits
        .validate()
        .map_err(|m| invalid("api_server", m.replace("api_", "api_server.")))?;
    Ok(ApiServerSettings { limits, socket })
}
