//! The local API: HTTP/1.1 + JSON for local apps and the CLI, on a Unix socket (mode 0600)
//! and optionally on a TCP address (loopback unless the operator sets `listen_remote`).
//!
//! Owns binding (stale-socket cleanup, permissions, the loopback rule and the token a
//! listener for other hosts needs), the serving
//! tasks and their shutdown. Routes live in `routes` (the keyring's in `keys`, member keys' in `member_keys`), shapes in `types`, errors in `error`,
//! the Prometheus exposition in `metrics`. The API reads the node and runs commands through
//! `AgentShared`; it must never drain the node's outputs (the agent's event loop does).

pub(crate) mod body;
pub mod consul;
pub mod error;
pub mod exposition;
pub mod health;
pub mod keys;
pub mod limits;
pub mod member_keys;
pub mod metrics;
pub mod reports;
pub mod routes;
pub(crate) mod serve;
pub(crate) mod state;
pub mod types;
pub mod wallclock;

pub use error::{ApiError, HttpError};

use crate::agent::shared::AgentShared;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener, UnixStream};

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Largest request body accepted (413 above).
pub const MAX_BODY: usize = 64 * 1024;
/// How long `ApiHandle::shutdown` lets open requests finish before cutting them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Where to serve the API, and its bounds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiOptions {
    /// Unix socket path (created with mode 0600 unless `socket` says otherwise).
    pub unix: Option<PathBuf>,
    /// TCP address (port 0 picks a free port: see `ApiHandle::http_addr`); loopback unless
    /// `reach` is `Remote`.
    pub http: Option<SocketAddr>,
    /// Who the TCP listener is for: `Remote` (`listen_remote`) allows any address and needs
    /// the API token (`AgentShared::api_token`) set before `spawn`.
    pub reach: limits::Reach,
    /// Connections, watch streams and timeouts (`api_max_connections`, ...).
    pub limits: limits::ApiLimits,
    /// Mode and group of the Unix socket (`api_socket_mode`, `api_socket_group`).
    pub socket: limits::SocketAccess,
}

/// The running API server. `shutdown` stops it and removes the socket file; dropping the
/// handle without calling it does the same, without waiting.
pub struct ApiHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    unix: Option<(PathBuf, u64)>,
    http: Option<SocketAddr>,
}

impl ApiHandle {
    /// The Unix socket path served, if any.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix.as_ref().map(|(p, _)| p.as_path())
    }

    /// The TCP address actually bound, if any.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// Stops accepting, ends watch streams and blocking queries, waits up to
    /// `SHUTDOWN_GRACE` for open requests, then removes the socket file.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        for mut t in tasks {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut t).await.is_err() {
                t.abort();
            }
        }
        self.remove_socket();
    }

    fn remove_socket(&mut self) {
        if let Some((path, ino)) = self.unix.take() {
            // Only remove the file if it is still ours (another agent may have replaced it).
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.ino() == ino => {
                    if let Err(e) = std::fs::remove_file(&path) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove the API socket");
                    }
                }
                _ => {}
            }
        }
    }
}

impl Drop for ApiHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
        self.remove_socket();
    }
}

/// The API's router over `shared`, without binding anything (for tests and embedding).
pub fn router(shared: Arc<AgentShared>) -> axum::Router {
    // A shutdown signal that never fires (a dropped sender reads as "never").
    let (_, rx) = watch::channel(false);
    routes::build(state::ApiState::new(
        shared,
        rx,
        limits::DEFAULT_MAX_WATCHES,
    ))
}

/// Binds the configured endpoints and spawns the serving tasks.
pub async fn spawn(shared: Arc<AgentShared>, opts: ApiOptions) -> Result<ApiHandle, ApiError> {
    if opts.unix.is_none() && opts.http.is_none() {
        return Err(ApiError::NothingToServe);
    }
    opts.limits.validate().map_err(ApiError::Limits)?;
    // Check and bind everything before serving anything, so that a failure leaves nothing.
    let tcp = match opts.http {
        Some(addr) => {
            if !opts.reach.allows(addr) {
                return Err(ApiError::NotLoopback(addr));
            }
            // Commands over the network only with the token: refuse rather than serve them
            // to anyone.
            if opts.reach == limits::Reach::Remote && shared.api_token.get().is_none() {
                return Err(ApiError::RemoteWithoutToken(addr));
            }
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ApiError::BindTcp { addr, source })?;
            let local = l
                .local_addr()
                .map_err(|source| ApiError::BindTcp { addr, source })?;
            Some((l, local))
        }
        None => None,
    };
    let unix = match &opts.unix {
        Some(path) => Some(bind_unix(path, &opts.socket).await?),
        None => None,
    };

    let (stop, rx) = watch::channel(false);
    let limits = opts.limits;
    // Each listener has its own watch streams (`max_watches` each): peers that reach the TCP
    // listener cannot take the streams of the apps on the socket, nor the other way round.
    let app_for = |tcp: bool, loopback_host: bool| {
        routes::build(
            state::ApiState::new(shared.clone(), rx.clone(), limits.max_watches)
                .with_loopback_host(loopback_host)
                .on_tcp(tcp),
        )
    };
    let mut tasks = Vec::new();
    let mut handle_unix = None;
    let mut handle_http = None;
    if let Some((listener, path, ino)) = unix {
        tasks.push(tokio::spawn(serve::serve(
            listener,
            app_for(false, false),
            limits,
            shared.clone(),
            rx.clone(),
        )));
        tracing::info!(path = %path.display(), "API listening on Unix socket");
        handle_unix = Some((path, ino));
    }
    if let Some((listener, local)) = tcp {
        tasks.push(tokio::spawn(serve::serve(
            listener,
            app_for(true, opts.reach != limits::Reach::Remote),
            limits,
            shared,
            rx.clone(),
        )));
        tracing::info!(addr = %local, "API listening on TCP");
        opts.reach
            .warn_if_remote("the local API (commands need the API token)", local);
        handle_http = Some(local);
    }
    Ok(ApiHandle {
        stop,
        tasks,
        unix: handle_unix,
        http: handle_http,
    })
}

/// Who is on the other end of an API connection, for the audit log of operator actions:
/// the peer's uid and pid on the Unix socket, its address on TCP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer(pub String);

/// Binds the Unix socket at `path` with mode 0600 (or `access`'s mode and group),
/// replacing a stale socket file.
///
/// The socket is bound under a temporary name in the same directory, given its group and
/// mode, then renamed into place, so that it is never reachable with looser permissions.
async fn bind_unix(
    path: &Path,
    access: &limits::SocketAccess,
) -> Result<(UnixListener, PathBuf, u64), ApiError> {
    let bind_err = |source| ApiError::BindUnix {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            if !m.file_type().is_socket() {
                return Err(ApiError::NotASocket(path.to_path_buf()));
            }
            let live = tokio::time::timeout(Duration::from_secs(1), UnixStream::connect(path))
                .await
                .map(|r| r.is_ok())
                .unwrap_or(true);
            if live {
                return Err(ApiError::SocketInUse(path.to_path_buf()));
            }
            tracing::info!(path = %path.display(), "removing a stale API socket");
            std::fs::remove_file(path).map_err(bind_err)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "shoal.sock".into());
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(bind_err)?;
    let finish = || -> std::io::Result<u64> {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        if let Some(gid) = access.group {
            std::os::unix::fs::chown(&tmp, None, Some(gid))?;
        }
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(access.mode))?;
        std::fs::rename(&tmp, path)?;
        Ok(std::fs::symlink_metadata(path)?.ino())
    };
    match finish() {
        Ok(ino) => Ok((listener, path.to_path_buf(), ino)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(bind_err(e))
        }
    }
}
