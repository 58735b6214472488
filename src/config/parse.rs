//! The parsers the key table names (one value in, a typed value or a message out), the range
//! check, and the small helpers around addresses and names (seed ports, the host name, the
//! advertise address detection).
//!
//! A parser sees one value and never another key; it must not know the key's name (the table
//! adds it to the error). The only I/O: reading the host name and asking the routing table
//! (a UDP `connect`, which sends nothing).

use super::{LogFormat, ServiceConfig, DEFAULT_PORT};
use shoal_core::Plaintext;
use shoal_core::MAX_LABEL_LEN;
use shoal_core::{validate_name, MAX_NAME_LEN};
use shoal_core::{GuardMode, Profile};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use shoal_core::parse_duration;

type Parsed<T> = Result<T, String>;

/// The value as given (its checks are elsewhere, or it needs none).
pub fn same<T: Clone>(v: &T) -> Parsed<T> {
    Ok(v.clone())
}

pub fn name(v: &str) -> Parsed<String> {
    validate_name(v)?;
    Ok(v.to_string())
}

/// `IP:PORT` (IPv6 as `[::1]:PORT`).
pub fn socket_addr(s: &str) -> Parsed<SocketAddr> {
    s.trim()
        .parse::<SocketAddr>()
        .map_err(|_| format!("{s:?} is not an IP:PORT address (for example 10.0.0.5:7946)"))
}

/// An address other members can send to (not 0.0.0.0).
pub fn advertise(s: &str) -> Parsed<SocketAddr> {
    let a = socket_addr(s)?;
    if a.ip().is_unspecified() {
        return Err(format!(
            "{a} is not an address other members can send to; give a specific IP"
        ));
    }
    Ok(a)
}

/// An `IP:PORT` (`http://` accepted) for one of the optional TCP listeners. Whether it may
/// be a non-loopback address depends on `listen_remote` (validate.rs).
pub fn listen_addr(a: &str) -> Parsed<SocketAddr> {
    socket_addr(a.strip_prefix("http://").unwrap_or(a))
}

/// A DNS zone (`consul`, `consul.`, `sd.example.com.`), as its name with the final dot.
pub fn dns_domain(v: &str) -> Parsed<String> {
    crate::dns::answer::Zone::parse(v).map(|z| z.fqdn().to_string())
}

/// Event handlers: each `TYPE[:NAME]=COMMAND` (`config::handlers::HandlerSpec`).
pub fn event_handlers(v: &[String]) -> Parsed<Vec<String>> {
    for h in v {
        super::handlers::HandlerSpec::parse(h)?;
    }
    Ok(v.to_vec())
}

pub fn seeds(v: &[String]) -> Parsed<Vec<String>> {
    v.iter().try_for_each(|s| check_seed(s))?;
    Ok(v.to_vec())
}

/// A seed: `IP:PORT`, `host:PORT`, or a bare IP or host (port 7946).
fn check_seed(s: &str) -> Parsed<()> {
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

pub fn data_dir(v: &Path) -> Parsed<PathBuf> {
    if v.as_os_str().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(v.to_path_buf())
}

/// `unix:PATH` (or an absolute path): the local API's socket.
pub fn api(s: &str) -> Parsed<PathBuf> {
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

pub fn profile(p: &str) -> Parsed<Profile> {
    match p {
        "lan" => Ok(Profile::Lan),
        "wan" => Ok(Profile::Wan),
        "local" => Ok(Profile::Local),
        _ => Err(format!("{p:?} is not a profile; use lan, wan or local")),
    }
}

pub fn cluster_label(v: &str) -> Parsed<String> {
    if v.len() > MAX_LABEL_LEN {
        return Err(format!(
            "is {} bytes; the limit is {MAX_LABEL_LEN}",
            v.len()
        ));
    }
    Ok(v.to_string())
}

/// A `tracing` filter directive.
pub fn log_level(v: &str) -> Parsed<String> {
    tracing_subscriber::EnvFilter::try_new(v).map_err(|e| {
        format!(
            "{v:?}: {e} (use error, warn, info, debug, trace or a filter like shoal=debug,warn)"
        )
    })?;
    Ok(v.to_string())
}

pub fn log_format(f: &str) -> Parsed<LogFormat> {
    match f {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{f:?} is not a log format; use text or json")),
    }
}

pub fn guard_mode(m: &str) -> Parsed<GuardMode> {
    match m {
        "enforce" => Ok(GuardMode::Enforce),
        "shadow" => Ok(GuardMode::Shadow),
        "off" => Ok(GuardMode::Off),
        _ => Err(format!(
            "{m:?} is not a guard mode; use enforce, shadow or off"
        )),
    }
}

/// The cluster key: base64 of 32 bytes.
pub fn key(k: &str) -> Parsed<String> {
    shoal_core::Key::parse(k).map_err(|e| e.to_string())?;
    Ok(k.to_string())
}

pub fn plaintext(p: &str) -> Parsed<Plaintext> {
    match p {
        "refuse" => Ok(Plaintext::Refuse),
        "accept" => Ok(Plaintext::Accept),
        "send" => Ok(Plaintext::Send),
        _ => Err(format!("{p:?}: use refuse, accept or send")),
    }
}

/// `key=value`.
pub fn tag(s: &str) -> Parsed<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not a tag; write key=value")),
    }
}

/// `name:port`.
pub fn service_flag(s: &str) -> Parsed<ServiceConfig> {
    let err = || format!("{s:?} is not a service; write name:port (for example web:8080)");
    let (name, port) = s.rsplit_once(':').ok_or_else(err)?;
    let port: u16 = port.parse().map_err(|_| err())?;
    if name.is_empty() || port == 0 {
        return Err(err());
    }
    Ok(ServiceConfig {
        name: name.to_string(),
        id: None,
        port,
        tags: BTreeMap::new(),
        checks: Vec::new(),
    })
}

/// A value a key's `range` bounds, shown the way the file writes it.
pub trait Bounded: PartialOrd {
    fn show(&self) -> String;
}

impl Bounded for Duration {
    fn show(&self) -> String {
        let ms = self.as_millis();
        if ms == 0 {
            return "0s".to_string();
        }
        [(3_600_000, "h"), (60_000, "m"), (1000, "s"), (1, "ms")]
            .iter()
            .find(|(unit, _)| ms.is_multiple_of(*unit))
            .map(|(unit, name)| format!("{}{name}", ms / unit))
            .unwrap_or_default()
    }
}

impl Bounded for usize {
    fn show(&self) -> String {
        self.to_string()
    }
}

/// Refuses a value outside `lo..=hi`; `what` is the key's doc (said in the message).
pub fn check_range<T: Bounded>(v: &T, lo: &T, hi: &T, what: &str) -> Parsed<()> {
    if v < lo || v > hi {
        return Err(format!(
            "must be between {} and {} ({})",
            lo.show(),
            hi.show(),
            what.trim()
        ));
    }
    Ok(())
}

/// The host name, sanitized into a valid node name.
pub fn default_name(env: &dyn Fn(&str) -> Option<String>) -> String {
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
pub fn detect_ip(bind_ip: IpAddr, join: &[String]) -> Option<IpAddr> {
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
