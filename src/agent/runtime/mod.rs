//! The agent's event loop: one UDP socket, one core `Node` (which keeps its own timers).
//!
//! Owns `Agent` (start, graceful leave, stop), the loop that feeds datagrams, timeouts (it
//! sleeps until `Node::poll_timeout`) and API wake-ups to the node and flushes what it
//! produced (datagrams to the socket, events to the broadcast and to the log, the snapshot
//! the node hands out on its schedule to `snapshot.json`); it calls on `seeds` (resolving the configured seeds),
//! `alert` (the alert hook's queue) and `logging` (one line per event). Datagrams to or from a peer cut off
//! by the test/chaos hook `AgentShared::faults` are dropped here, before the node sees them,
//! in the loop's checked instance only (builds with the `fault-injection` feature, and
//! `shoal dev`). The loop itself is the child module `event_loop`. It decides nothing the
//! core could decide, and never logs per packet.

use crate::agent::alert::AlertQueue;
use crate::agent::clock::{SkewLog, WallClock};
use crate::agent::datadir::{self, DataDirError, DirLock};
use crate::agent::registrations::{self, RegistrationsError};
use crate::agent::seeds::{resolve_seeds, retry_seeds};
use crate::agent::shared::AgentShared;
use crate::agent::snapshot::{self, SnapshotFileError, SNAPSHOT_FILE};
use crate::config::Config;
use shoal_core::{Node, NodeError, Time};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// The event loop: receiving, sleeping until the core's next timeout, flushing its output.
mod event_loop;
use event_loop::run_loop;

/// Snapshots older than this are not even used for their peers (the core decides separately
/// whether a snapshot is fresh enough to be served: `guard.snapshot_max_age`).
const SNAPSHOT_PEERS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Socket errors are logged at most this often.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("cannot bind UDP {addr}: the address is already in use (another shoal or serf agent?); choose another --bind")]
    AddrInUse { addr: SocketAddr },
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the data directory {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the node: {0}")]
    Node(#[from] NodeError),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Files(#[from] DataDirError),
    #[error("invalid services.checks: {0}")]
    Checks(#[from] crate::agent::checks::CheckError),
    #[error(transparent)]
    Registrations(#[from] RegistrationsError),
}

/// Socket-level counters the node cannot see (its own `Stats` count what it received).
#[derive(Debug, Default)]
pub struct IoStats {
    pub send_errors: AtomicU64,
    pub recv_errors: AtomicU64,
    last_log: Mutex<Option<Instant>>,
}

impl IoStats {
    fn error(&self, what: &str, counter: &AtomicU64, e: &std::io::Error, peer: Option<SocketAddr>) {
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= ERROR_LOG_EVERY);
        if due {
            *last = Some(Instant::now());
            match peer {
                Some(p) => warn!(error = %e, peer = %p, total = n, "UDP {what} failed"),
                None => warn!(error = %e, total = n, "UDP {what} failed"),
            }
        }
    }

    pub fn send_errors(&self) -> u64 {
        self.send_errors.load(Ordering::Relaxed)
    }

    pub fn recv_errors(&self) -> u64 {
        self.recv_errors.load(Ordering::Relaxed)
    }
}

/// A running agent: the event loop task and what the API needs to reach it.
pub struct Agent {
    shared: Arc<AgentShared>,
    io: Arc<IoStats>,
    local_addr: SocketAddr,
    advertise: SocketAddr,
    /// What SIGTERM does (`terminate`): announce a restart with this grace, or leave.
    restart_grace: Duration,
    leave_on_terminate: bool,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    resolver: Option<JoinHandle<()>>,
    /// The data directory's lock, held while the agent lives.
    _lock: DirLock,
}

impl Agent {
    /// Binds the socket, builds and starts the node, and spawns the event loop. The loop
    /// checks the test/chaos hook `AgentShared::faults` on every datagram only in builds with
    /// the `fault-injection` feature (the tests enable it); `shoal agent` in a plain build has
    /// no such check on its path.
    pub async fn start(cfg: &Config) -> Result<Agent, AgentError> {
        Self::start_inner(cfg, cfg!(feature = "fault-injection")).await
    }

    /// `start` with the test/chaos hook `AgentShared::faults` in force whatever the build:
    /// for `shoal dev`, whose keys cut agents off. Its own instance of the event loop, so that
    /// `start`'s carries no fault check.
    pub async fn start_with_faults(cfg: &Config) -> Result<Agent, AgentError> {
        Self::start_inner(cfg, true).await
    }

    async fn start_inner(cfg: &Config, faults: bool) -> Result<Agent, AgentError> {
        // The socket's group must be able to reach a socket kept in the data directory.
        let socket_group = cfg
            .api_server
            .socket
            .group
            .filter(|_| cfg.api.parent() == Some(cfg.data_dir.as_path()));
        let lock = datadir::prepare_for_group(&cfg.data_dir, socket_group)?;
        let keyring = datadir::startup_keyring(
            &cfg.trust.keyring_file,
            cfg.trust.encrypt.as_deref(),
            cfg.trust.encrypt_file.as_deref(),
            cfg.trust.insecure,
        )?;
        let socket = UdpSocket::bind(cfg.bind).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                AgentError::AddrInUse { addr: cfg.bind }
            } else {
                AgentError::Bind {
                    addr: cfg.bind,
                    source,
                }
            }
        })?;
        let local_addr = socket.local_addr().map_err(|source| AgentError::Bind {
            addr: cfg.bind,
            source,
        })?;
        let mut advertise = cfg.advertise_addr();
        if advertise.port() == 0 {
            advertise.set_port(local_addr.port());
        }
        if advertise.ip().is_unspecified() {
            advertise.set_ip(local_addr.ip());
        }

        let (seeds, unresolved) = resolve_seeds(&cfg.join, advertise).await;
        let mut nc = cfg.node_config();
        nc.advertise = advertise;
        nc.seeds = seeds.clone();
        // The one wall clock the core is given (tests may offset it: `agent::clock`).
        let clock = WallClock::new(cfg.clock_offset_ms);
        if cfg.clock_offset_ms != 0 {
            warn!(
                offset_ms = cfg.clock_offset_ms,
                "TEST ONLY: this agent's wall clock is offset ({})",
                crate::agent::clock::TEST_OFFSET_ENV
            );
        }
        let generation = clock.unix_ms().max(1);
        let epoch = Instant::now();
        let mut file_checks = cfg.service_checks()?;
        // What apps registered through the API before a restart, merged with the config file
        // as a SIGHUP would merge them: announced from the first datagram on.
        let reg_path = cfg.data_dir.join(registrations::REGISTRATIONS_FILE);
        let mut saved = registrations::load(&reg_path)?;
        if !cfg.enable_api_exec_checks {
            // Exec checks an app registered while the API accepted them do not run again
            // once the operator has turned that off.
            if let Some(saved) = saved.as_mut() {
                let mut dropped = 0;
                for specs in saved.api_checks.values_mut() {
                    let before = specs.len();
                    specs.retain(|c| c.exec.is_none());
                    dropped += before - specs.len();
                }
                if dropped > 0 {
                    warn!(
                        dropped,
                        "exec checks registered through the API are not run: \
                         enable_api_exec_checks is off"
                    );
                }
            }
        }
        let mut file_specs = cfg.check_specs();
        let mut file_meta = cfg.node_meta();
        let mut start = registrations::startup(saved.as_ref(), &file_meta, &file_specs);
        let mut checks = usable_start(&start);
        if let (Err(e), Some(saved)) = (&checks, &saved) {
            // The file's changes do not fit with what apps registered (over a limit, a check
            // id used twice): a SIGHUP would refuse them and keep running, so does a restart.
            // Start with what was served before, the file as last read; a SIGHUP tries again.
            error!(
                error = %e,
                path = %reg_path.display(),
                "the config file's changes do not fit with the registrations: NOT applied; \
                 starting with the registrations as they were (fix the file, then SIGHUP)"
            );
            file_meta = saved.file.clone();
            file_specs = saved.file_checks.clone();
            file_checks = crate::agent::checks::resolve_services(
                file_specs.iter().map(|(s, v)| (s.as_str(), v.as_slice())),
            )?;
            start = registrations::startup(Some(saved), &file_meta, &file_specs);
            checks = usable_start(&start);
        }
        let checks = checks?;
        let mut meta = start.meta;
        crate::agent::checks::with_initial_health(&mut meta, &checks);
        if saved.is_some() {
            info!(
                tags = meta.tags.len(),
                services = meta.services.len(),
                api_checks = start.api_checks.len(),
                path = %reg_path.display(),
                "restored the registrations (config file's changes applied as on SIGHUP)"
            );
        }
        let mut node = Node::new(nc, generation, meta, os_seed(), Time::ZERO)?;
        // The core's one wall-clock input (kept in step in `flush`): before anything that
        // reads it (sealing, the snapshot's age).
        node.set_wall_clock(Time::ZERO, clock.unix_ms());
        node.set_max_members(cfg.max_members);
        match &keyring {
            Some(r) => info!(
                primary = %r.primary().id(),
                keys = r.keys().len(),
                plaintext = ?cfg.trust.plaintext,
                "gossip is encrypted and authenticated"
            ),
            None => warn!(
                "running WITHOUT encryption (--insecure): anyone who can send a datagram to this \
                 agent can speak for any node"
            ),
        }
        node.set_trust(shoal_core::TrustConfig {
            keyring,
            plaintext: cfg.trust.plaintext,
            replay_window: cfg.trust.replay_window,
            max_sessions: cfg.trust.max_sessions,
        })?;
        let member_key = crate::agent::member_keys::load_or_create(&cfg.data_dir)?;
        let known = crate::agent::member_keys::load_known(&cfg.data_dir)?;
        info!(
            key = %member_key.public().fingerprint(),
            known_members = known.len(),
            "this agent signs its record with its member key"
        );
        node.set_member_keys(member_key, known)?;
        let snap_path = cfg.data_dir.join(SNAPSHOT_FILE);
        match snapshot::load(&snap_path, SNAPSHOT_PEERS_MAX_AGE, clock.unix_ms()) {
            Ok(snap) => match node.restore(Time::ZERO, snap) {
                Ok(r) => {
                    info!(restored = ?r, path = %snap_path.display(), "restored the last served view")
                }
                Err(e) => warn!(error = %e, path = %snap_path.display(), "snapshot not restored"),
            },
            Err(SnapshotFileError::NotFound(_)) => {}
            Err(e) => warn!(error = %e, "snapshot not restored"),
        }
        let shared = Arc::new(AgentShared::new(node, epoch));
        if let Some(path) = &cfg.trust.api_token_file {
            let token = std::fs::read_to_string(path)
                .map(|t| t.trim().to_string())
                .ok()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| DataDirError::TokenFile { path: path.clone() })?;
            let _ = shared.api_token.set(token);
        }
        shared
            .api_exec_checks
            .store(cfg.enable_api_exec_checks, Ordering::Relaxed);
        *shared.file_meta.lock().unwrap_or_else(|p| p.into_inner()) = file_meta;
        *shared
            .registrations
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = registrations::RegistrationState {
            path: Some(reg_path.clone()),
            api_checks: start.api_checks,
            file_checks: file_specs,
        };
        // The file as read now is the base of the next merge (as after a SIGHUP).
        if let Err(e) = registrations::save(&reg_path, &registrations::current(&shared)) {
            warn!(error = %e, "could not persist the registrations");
        }
        shared.checks.attach(&shared);
        shared.with_node(|n, now| {
            n.start(now);
            shared.checks.start_checks(n, file_checks, checks, now);
        });
        info!(
            name = %cfg.name,
            bind = %local_addr,
            advertise = %advertise,
            profile = %cfg.profile,
            seeds = seeds.len(),
            generation,
            "agent started"
        );

        let io = Arc::new(IoStats::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        let ctx = LoopCtx {
            keyring_file: cfg.trust.keyring_file.clone(),
            known: crate::agent::member_keys::KnownSaver::spawn(cfg.data_dir.clone()),
            snap_path,
            alerts: cfg.alert_hook.clone().map(AlertQueue::spawn),
            handlers: crate::agent::handlers::Handlers::spawn(
                &cfg.event_handlers,
                crate::agent::handlers::RunCfg {
                    timeout: cfg.handler_timeout,
                    coalesce: cfg.handler_coalesce,
                    answer_max: cfg.query_answer_max,
                    self_name: cfg.name.clone(),
                },
                shared.clone(),
            ),
            drop_log: Default::default(),
            clock,
            skew_log: Default::default(),
            replay_window: cfg.trust.replay_window,
        };
        let (socket, sh, io2) = (Arc::new(socket), shared.clone(), io.clone());
        let task = if faults {
            tokio::spawn(run_loop::<true>(socket, sh, stop_rx, io2, ctx))
        } else {
            tokio::spawn(run_loop::<false>(socket, sh, stop_rx, io2, ctx))
        };
        let resolver = if unresolved.is_empty() {
            None
        } else {
            Some(tokio::spawn(retry_seeds(
                unresolved,
                advertise,
                shared.clone(),
            )))
        };
        Ok(Agent {
            shared,
            io,
            local_addr,
            advertise,
            restart_grace: cfg.restart_grace,
            leave_on_terminate: cfg.leave_on_terminate,
            stop: Some(stop_tx),
            task: Some(task),
            resolver,
            _lock: lock,
        })
    }

    /// The seam the local API uses.
    pub fn shared(&self) -> Arc<AgentShared> {
        self.shared.clone()
    }

    /// The address the socket is bound to (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address other members send to.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise
    }

    /// Socket errors counted by the loop.
    pub fn io_stats(&self) -> Arc<IoStats> {
        self.io.clone()
    }

    /// Leaves the cluster gracefully, waits (at most `max_wait`) until the core says the
    /// leave is finished (sent, and spread for two gossip intervals), then stops the loop. A
    /// decommission: peers serve this node `left` and its services are gone everywhere.
    pub async fn leave_and_stop(self, max_wait: Duration) {
        self.announce_and_stop(max_wait, "left the cluster", |n, now| n.leave(now))
            .await;
    }

    /// Stops to restart, which is not a decommission: announces "restarting, expect me back
    /// within `restart_grace`" (peers keep serving this node and its services, `restarting`),
    /// waits (at most `max_wait`) until the core says the announcement is finished (sent, and
    /// spread for two gossip intervals), then stops the loop without leaving.
    pub async fn restart_and_stop(self, max_wait: Duration) {
        let grace = self.restart_grace;
        self.announce_and_stop(
            max_wait,
            "announced a restart; peers serve this node as restarting until it is back",
            move |n, now| n.announce_restart(now, grace),
        )
        .await;
    }

    /// What SIGTERM does: `restart_and_stop`, or with `leave_on_terminate`, `leave_and_stop`.
    pub async fn terminate(self, max_wait: Duration) {
        if self.leave_on_terminate {
            self.leave_and_stop(max_wait).await;
        } else {
            self.restart_and_stop(max_wait).await;
        }
    }

    /// Whether SIGTERM leaves (`leave_on_terminate`) rather than announcing a restart.
    pub fn leaves_on_terminate(&self) -> bool {
        self.leave_on_terminate
    }

    /// Runs `announce` (a leave or a restart announcement) on the node (API commands get 503
    /// from now on), waits at most `max_wait` until the core says it is finished (sent, and
    /// spread for two gossip intervals; `AgentShared::leave_finished`), then stops the loop.
    async fn announce_and_stop(
        mut self,
        max_wait: Duration,
        done: &str,
        announce: impl FnOnce(&mut Node, Time) -> Result<(), NodeError>,
    ) {
        let deadline = tokio::time::Instant::now() + max_wait;
        self.shared
            .shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let shared = self.shared.clone();
        let events = shared.events.subscribe();
        match shared.with_node(announce) {
            Ok(()) => {
                if !shared.leave_finished(events, deadline).await {
                    warn!("not finished within {max_wait:?} ({done}); stopping anyway");
                }
                info!("{done}");
            }
            Err(e) => warn!(error = %e, "could not announce ({done})"),
        }
        self.shutdown().await;
    }

    /// Stops the loop without leaving (as if the process was killed): peers will detect the
    /// failure. Closes the socket before returning.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        self.shared.checks.stop_all();
        if let Some(r) = self.resolver.take() {
            r.abort();
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(mut t) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(2), &mut t)
                .await
                .is_err()
            {
                t.abort();
                let _ = t.await;
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shared.checks.stop_all();
        if let Some(r) = self.resolver.take() {
            r.abort();
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// The checks to run for `start`, if its metadata and checks are within every limit.
fn usable_start(
    start: &registrations::Startup,
) -> Result<Vec<(String, Vec<crate::agent::checks::CheckDef>)>, AgentError> {
    start
        .meta
        .validate()
        .map_err(|e| AgentError::Node(NodeError::Meta(e)))?;
    Ok(crate::agent::checks::resolve_services(
        start.checks.iter().map(|(s, v)| (s.as_str(), v.as_slice())),
    )?)
}

/// A seed for the node's random choices: OS-seeded hasher keys mixed with time and pid.
fn os_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// What the loop needs besides the socket and the node.
struct LoopCtx {
    snap_path: PathBuf,
    /// Where keyring changes are persisted.
    keyring_file: PathBuf,
    /// Persists the known members' keys (`member_keys`), off the loop.
    known: crate::agent::member_keys::KnownSaver,
    /// Transitions for the alert hook, when one is configured.
    alerts: Option<Arc<AlertQueue>>,
    /// The event handlers of the config file, when any.
    handlers: Option<crate::agent::handlers::Handlers>,
    /// Rate-limited lines about refused datagrams (`droplog`).
    drop_log: Mutex<crate::agent::droplog::DropLog>,
    /// The wall clock given to the core.
    clock: WallClock,
    /// The rate limit of the warning about peers' clocks.
    skew_log: Mutex<SkewLog>,
    replay_window: Duration,
}

impl Drop for LoopCtx {
    /// The loop ended (or was aborted): the alert task runs what is queued, then ends.
    fn drop(&mut self) {
        if let Some(alerts) = &self.alerts {
            alerts.close();
        }
    }
}
