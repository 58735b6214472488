//! systemd's readiness protocol (`Type=notify`): `READY=1` once the agent serves its API,
//! `STOPPING=1` when it begins to stop, each a datagram to the Unix socket `NOTIFY_SOCKET`
//! names (a path, or `@name` in the abstract namespace).
//!
//! Written by hand rather than with a crate: the protocol is one datagram of `KEY=VALUE`
//! lines, and std's `UnixDatagram` (abstract addresses included) sends it without unsafe
//! code or another dependency. Owns nothing else: it must not decide when the agent is
//! ready (the binary calls it once every listener is bound) and never fails the agent (no
//! socket, no systemd: nothing is sent).

use std::io;
use std::os::unix::net::UnixDatagram;

/// The variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (`READY=1`, `STOPPING=1`, ...) to `$NOTIFY_SOCKET` if it is set. Returns
/// whether it was sent; an error is logged once by the caller's choice, never fatal.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET) else {
        return Ok(false);
    };
    let target = target.to_string_lossy().into_owned();
    let sock = UnixDatagram::unbound()?;
    match target.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            sock.send_to(state.as_bytes(), &target)?;
        }
    }
    Ok(true)
}

/// [`notify`], logging a failure (the service manager then times the start out, which says
/// more than a failed agent would).
pub fn notify_or_warn(state: &str) {
    match notify(state) {
        Ok(true) => tracing::debug!(state, "told the service manager"),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(state, error = %e, "cannot notify the service manager ($NOTIFY_SOCKET)")
        }
    }
}
