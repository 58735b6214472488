//! Bounds of the HTTP listeners (the local API and the Consul-compatible API), as configured:
//! how many connections and watch streams may be open at once, how long a connection may sit
//! idle or take to send a request head, who may open the Unix socket (its mode and group), and
//! who a TCP listener is for (`Reach`: this host only, or the network with `listen_remote`).
//!
//! Owns these settings with their defaults and validation (they are config: `api::limits`
//! counts what the listeners do under them). Must not serve anything itself (`api::serve`
//! applies the connection bounds and timeouts, `api::routes` the watch bound,
//! `api::bind_unix` the socket access).

use std::time::Duration;

/// Default bound on concurrent connections per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default bound on concurrent `GET /v1/watch` streams (all listeners of the local API).
pub const DEFAULT_MAX_WATCHES: usize = 128;
/// Default time allowed for a request head once its first byte arrived.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection may stay open with no request in progress.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default mode of the API's Unix socket.
pub const DEFAULT_SOCKET_MODE: u32 = 0o600;
/// Mode of the socket when a group is given and no mode.
pub const DEFAULT_GROUP_SOCKET_MODE: u32 = 0o660;

/// Connection and stream bounds of one HTTP listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ApiLimits {
    /// Connections open at once; past it a new connection gets a 503 and is closed.
    pub max_connections: usize,
    /// Watch streams open at once; past it `GET /v1/watch` answers 503.
    pub max_watches: usize,
    /// Time a request head may take from its first byte to its end.
    pub header_timeout: Duration,
    /// Time a connection may stay open with no request in progress (before its first
    /// request or between keep-alive requests). A request being answered, a watch stream
    /// or a blocking query included, is never idle.
    pub idle_timeout: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_watches: DEFAULT_MAX_WATCHES,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

impl ApiLimits {
    /// Checks the bounds: every one must be positive, and below what a process can hold.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 || self.max_connections > 65_536 {
            return Err(format!(
                "api_max_connections must be between 1 and 65536 (got {})",
                self.max_connections
            ));
        }
        if self.max_watches == 0 || self.max_watches > self.max_connections {
            return Err(format!(
                "api_max_watches must be between 1 and api_max_connections ({}) (got {})",
                self.max_connections, self.max_watches
            ));
        }
        for (name, d) in [
            ("api_header_timeout", self.header_timeout),
            ("api_idle_timeout", self.idle_timeout),
        ] {
            if d < Duration::from_millis(10) || d > Duration::from_secs(24 * 3600) {
                return Err(format!("{name} must be between 10ms and 24h (got {d:?})"));
            }
        }
        Ok(())
    }
}

/// Who a TCP listener (the local API, the Consul-compatible API, DNS) is for.
///
/// `Local` (the default) binds loopback addresses only. `Remote` is the operator's explicit
/// `listen_remote = true`: any address, read-only routes open to whoever reaches it, and
/// the local API's commands behind the API token (an agent refuses to serve its API to the
/// network without one: `api::spawn`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    #[default]
    Local,
    Remote,
}

impl Reach {
    /// From the `listen_remote` setting.
    pub fn from_listen_remote(remote: bool) -> Reach {
        if remote {
            Reach::Remote
        } else {
            Reach::Local
        }
    }

    /// Whether a listener on `addr` is allowed: any address when `Remote`, loopback only
    /// when `Local`.
    pub fn allows(self, addr: std::net::SocketAddr) -> bool {
        self == Reach::Remote || addr.ip().is_loopback()
    }

    /// Logs, once at start, that `what` on `addr` answers other hosts.
    pub fn warn_if_remote(self, what: &str, addr: std::net::SocketAddr) {
        if self == Reach::Remote {
            tracing::warn!(
                %addr,
                "{what} is reachable from the network (listen_remote): whoever can reach {addr} \
                 reads the cluster's members, addresses, tags and services; firewall it to the \
                 hosts that need it"
            );
        }
    }
}

/// Who may open the API's Unix socket.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SocketAccess {
    /// Permission bits of the socket file (0600 by default).
    pub mode: u32,
    /// Group the socket file is given (its gid), if any.
    pub group: Option<u32>,
}

impl Default for SocketAccess {
    fn default() -> Self {
        SocketAccess {
            mode: DEFAULT_SOCKET_MODE,
            group: None,
        }
    }
}

impl SocketAccess {
    /// From the config's `api_socket_mode` (octal text) and `api_socket_group` (a group name
    /// or a numeric gid). A group without a mode gives 0660.
    pub fn parse(mode: Option<&str>, group: Option<&str>) -> Result<SocketAccess, String> {
        let group = match group {
            None => None,
            Some(g) => Some(resolve_group(g)?),
        };
        let mode = match mode {
            None if group.is_some() => DEFAULT_GROUP_SOCKET_MODE,
            None => DEFAULT_SOCKET_MODE,
            Some(m) => parse_mode(m)?,
        };
        Ok(SocketAccess { mode, group })
    }
}

/// An octal socket mode: the owner keeps read and write, nobody outside the owner and the
/// group gets anything (use a group to widen access), no special bits.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("api_socket_mode {s:?} is not an octal mode such as 0660"))?;
    if mode > 0o777 {
        return Err(format!(
            "api_socket_mode {s:?}: only permission bits (at most 0777) are allowed"
        ));
    }
    if mode & 0o600 != 0o600 {
        return Err(format!(
            "api_socket_mode {s:?} takes read/write away from the agent's own user (the CLI \
             run as that user could not connect): keep 06xx"
        ));
    }
    if mode & 0o007 != 0 {
        return Err(format!(
            "api_socket_mode {s:?} opens the socket to every local user: give a group \
             (api_socket_group) and a mode such as 0660 instead"
        ));
    }
    Ok(mode)
}

/// A group name (looked up in /etc/group) or a numeric gid.
pub fn resolve_group(g: &str) -> Result<u32, String> {
    let g = g.trim();
    if g.is_empty() {
        return Err("api_socket_group is empty: give a group name or gid".into());
    }
    if let Ok(gid) = g.parse::<u32>() {
        return Ok(gid);
    }
    let text = std::fs::read_to_string("/etc/group")
        .map_err(|e| format!("api_socket_group {g:?}: cannot read /etc/group ({e}); give a gid"))?;
    group_gid(&text, g).ok_or_else(|| {
        format!("api_socket_group {g:?} is not a group on this host (not in /etc/group)")
    })
}

/// The gid of `name` in the text of an /etc/group file.
fn group_gid(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        if f.next()? != name {
            return None;
        }
        f.next()?;
        f.next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_groups() {
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0o640"), Ok(0o640));
        for bad in ["0666", "0400", "rw", "01660", "0606"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
        let etc = "root:x:0:\nshoal:x:998:alice,bob\nbroken\n";
        assert_eq!(group_gid(etc, "shoal"), Some(998));
        assert_eq!(group_gid(etc, "root"), Some(0));
        assert_eq!(group_gid(etc, "nobody"), None);
        assert_eq!(resolve_group("1234"), Ok(1234));
        assert_eq!(
            SocketAccess::parse(None, Some("42")),
            Ok(SocketAccess {
                mode: 0o660,
                group: Some(42)
            })
        );
        assert_eq!(SocketAccess::parse(None, None), Ok(SocketAccess::default()));
        assert!(SocketAccess::parse(None, Some("no-such-group-here")).is_err());
    }

    #[test]
    fn limits_are_validated() {
        assert!(ApiLimits::default().validate().is_ok());
        let bad = [
            ApiLimits {
                max_connections: 0,
                ..Default::default()
            },
            ApiLimits {
                max_watches: 0,
                ..Default::default()
            },
            ApiLimits {
                max_connections: 10,
                max_watches: 11,
                ..Default::default()
            },
            ApiLimits {
                idle_timeout: Duration::ZERO,
                ..Default::default()
            },
        ];
        for l in bad {
            assert!(l.validate().is_err(), "{l:?}");
        }
    }
}
