//! The shared state every API handler receives: the agent, the shutdown signal, the
//! watch-stream permits and what kind of listener the request came through.
//!
//! Owns only the state's shape and its constructors (a leaf: imports nothing of the API).
//! Must not route, parse requests or read the node: handlers do.

use crate::agent::shared::AgentShared;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub(crate) struct ApiState {
    pub shared: Arc<AgentShared>,
    /// Becomes `true` when the server shuts down: watch streams and blocking queries end.
    pub shutdown: watch::Receiver<bool>,
    /// One permit per watch stream open (`api_max_watches`).
    pub watches: Arc<tokio::sync::Semaphore>,
    pub max_watches: usize,
    /// A loopback TCP listener: requests must name a loopback host (`Host`), so that a web
    /// page cannot reach it by DNS rebinding. Off for the Unix socket (no browser reaches
    /// it) and for a `listen_remote` listener (other hosts name it as they please).
    pub loopback_host: bool,
    /// A TCP listener: every local user reaches it (no file mode guards it as on the
    /// socket), so it takes commands only with the API token; reads stay open.
    pub tcp: bool,
}

impl ApiState {
    pub fn new(
        shared: Arc<AgentShared>,
        shutdown: watch::Receiver<bool>,
        max_watches: usize,
    ) -> Self {
        ApiState {
            shared,
            shutdown,
            watches: Arc::new(tokio::sync::Semaphore::new(max_watches)),
            max_watches,
            loopback_host: false,
            tcp: false,
        }
    }

    /// The same, requiring a loopback `Host` (see `loopback_host`).
    pub fn with_loopback_host(mut self, on: bool) -> Self {
        self.loopback_host = on;
        self
    }

    /// The same, for a TCP listener (see `tcp`).
    pub fn on_tcp(mut self, on: bool) -> Self {
        self.tcp = on;
        self
    }
}
