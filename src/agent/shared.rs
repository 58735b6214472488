//! The seam between the agent's event loop and its local API.
//!
//! Owns `AgentShared`: the node behind a mutex, the agent's clock, the wake-up the API uses
//! to make the loop flush what a command produced, and the broadcast of served-view events.
//! API handlers call `with_node`; only the event loop (`agent::runtime`) drains the node's
//! outputs (datagrams, timers, events). Nothing here decides anything.
//!
//! Also declares the plain state other agent rooms keep in it: `HandlerStats` (counted by
//! `agent::handlers`) and `RegistrationState` with its `Checks` (kept by
//! `agent::registrations`), so that those rooms import this one and never the reverse.
//!
//! Also owns `Faults`, a fault-injection hook for tests and chaos experiments: a set of peer
//! addresses the event loop cuts off, loss, a one-way cut, and added delays per destination
//! (longer links for the tests of network coordinates). It is reachable only through this library (no API route,
//! no flag, no config key), and checked only by the event loop of builds with the
//! `fault-injection` feature (the tests) and of `shoal dev` (`Agent::start_with_faults`): a
//! plain build's `shoal agent` never looks at it.

use crate::config::checks::CheckSpec;
use shoal_core::{Event, EventKind, LocalEvent, Node, NodeMeta, Time};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, Notify};

/// Capacity of the event broadcast; a watcher that falls this far behind is told so and
/// resynchronises from the current state. The channel allocates every slot up front, so
/// slots hold an `Arc<Event>` (a pointer), not the event itself: 4096 inline events were
/// 740 KB of each agent's memory.
pub const EVENT_BACKLOG: usize = 4096;

pub struct AgentShared {
    node: Mutex<Node>,
    epoch: Instant,
    /// Wall-clock time (ms since the Unix epoch) that `epoch` stands for: turns the core's
    /// times (`since_ms`, `at_ms`) into RFC 3339 times for readers.
    epoch_unix_ms: u64,
    /// Wakes the event loop so that it flushes outputs produced by an API command.
    pub wake: Notify,
    /// Notified (`notify_waiters`) by the event loop each time it has flushed the node's
    /// outputs to the socket: an API command that must return "once sent" creates a
    /// `flushed.notified()` future before calling `with_node`, then awaits it (bounded).
    pub flushed: Notify,
    /// Every served-view event, in index order.
    pub events: broadcast::Sender<Arc<Event>>,
    /// Set once the agent is shutting down (API answers 503 to commands).
    pub shutting_down: std::sync::atomic::AtomicBool,
    /// Test/chaos hook: peers the event loop cuts off (see `Faults`). Empty in production.
    pub faults: Faults,
    /// When set (`--api-token-file`), commands through the API (every method but GET and
    /// HEAD) need `Authorization: Bearer <token>`.
    pub api_token: std::sync::OnceLock<String>,
    /// Whether `exec` checks may be registered through the API (`enable_api_exec_checks`,
    /// set once at start; off by default: the API then never makes the agent run a command).
    pub api_exec_checks: std::sync::atomic::AtomicBool,
    /// Tags and services as the config file gave them when last read (start or SIGHUP):
    /// the base of the reload's three-way merge (`agent::reload`).
    pub file_meta: Mutex<NodeMeta>,
    /// Connections, watch streams, refusals and timeouts of the HTTP listeners (`/metrics`).
    pub api_load: crate::api::limits::ApiLoad,
    /// Runs, failures, timeouts and drops of the event handlers (`agent::handlers`).
    pub handlers: HandlerStats,
    /// The services' health checks (started by `Agent::start`, stopped with the agent).
    pub checks: crate::agent::checks::CheckManager,
    /// Where registrations are persisted and which checks came from the API or the file
    /// (`agent::registrations`).
    pub registrations: Mutex<RegistrationState>,
    /// One write of the registrations file at a time (`registrations::persist`).
    pub persist_turn: tokio::sync::Mutex<()>,
    /// Notified once the node has left through the API (`POST /v1/leave`): the agent's
    /// process then stops (`run_until_signal`).
    pub left_via_api: Notify,
}

/// Counters of handler runs (`/metrics`: `shoal_handler_*`).
#[derive(Debug, Default)]
pub struct HandlerStats {
    pub runs: AtomicU64,
    pub failures: AtomicU64,
    pub timeouts: AtomicU64,
    /// Events dropped because a handler's queue was full.
    pub dropped: AtomicU64,
    /// Events handed to handlers (a run takes many during a storm).
    pub events: AtomicU64,
}

impl HandlerStats {
    /// Adds the handler families to the `/metrics` exposition.
    pub fn render(&self, out: &mut crate::api::exposition::Exposition) {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.counters(
            "shoal_handler_runs_total",
            "Event handler runs, by result.",
            "result",
            [
                (
                    "ok",
                    g(&self.runs).saturating_sub(g(&self.failures) + g(&self.timeouts)),
                ),
                ("failed", g(&self.failures)),
                ("timeout", g(&self.timeouts)),
            ],
        );
        out.counter(
            "shoal_handler_events_total",
            "Events handed to event handlers.",
            g(&self.events),
        );
        out.counter(
            "shoal_handler_dropped_total",
            "Events dropped because a handler's queue was full.",
            g(&self.dropped),
        );
    }
}

/// Check specs by service name.
pub type Checks = BTreeMap<String, Vec<CheckSpec>>;

/// Where the registrations live and which checks came from where (in `AgentShared`).
#[derive(Debug, Default)]
pub struct RegistrationState {
    /// The file path (unset: not persisted, e.g. an agent embedded without a data directory).
    pub path: Option<PathBuf>,
    pub api_checks: Checks,
    pub file_checks: Checks,
}

/// TEST / CHAOS HOOK ONLY: peer addresses this agent is cut off from.
///
/// The event loop drops every datagram it would send to a blocked address and every datagram
/// it receives from one, before the node sees it, as if the network between them had failed
/// (the node cannot tell the difference). Blocking a peer on one agent cuts both directions
/// between the two. Drops are counted here, not in the node's statistics.
///
/// It is deliberately reachable only from Rust (`AgentShared::faults`): there is no API route,
/// flag or config key to set it, so nothing on the network can cut an agent off. Only the
/// event loop's checked instance reads it (the `fault-injection` feature, or `shoal dev`);
/// there, while the set is empty, the check is a single relaxed atomic load.
#[derive(Debug, Default)]
pub struct Faults {
    /// Fast path: false while `blocked` is empty.
    active: AtomicBool,
    blocked: RwLock<HashSet<SocketAddr>>,
    /// A one-way cut: every datagram received is dropped, sends still go out.
    deaf: AtomicBool,
    /// Random loss of every datagram in and out, in parts per thousand (a half-working NIC:
    /// a gray failure), drawn from a seeded generator (`set_loss`).
    loss_permille: AtomicU32,
    rng: AtomicU64,
    dropped_in: AtomicU64,
    dropped_out: AtomicU64,
    /// Added one-way delay of what this agent sends, per destination (`delay`): a link
    /// longer than loopback, for tests of network coordinates. Empty in production.
    delays: RwLock<std::collections::BTreeMap<SocketAddr, std::time::Duration>>,
}

impl Faults {
    fn set(&self) -> std::sync::RwLockWriteGuard<'_, HashSet<SocketAddr>> {
        self.blocked.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts this agent off from `peer` (both directions).
    pub fn block(&self, peer: SocketAddr) {
        let mut set = self.set();
        set.insert(peer);
        self.active.store(true, Ordering::Release);
    }

    /// Cuts this agent off from every address in `peers`.
    pub fn block_all(&self, peers: impl IntoIterator<Item = SocketAddr>) {
        let mut set = self.set();
        set.extend(peers);
        self.active
            .store(!set.is_empty() || self.other_faults(), Ordering::Release);
    }

    /// Reconnects this agent to `peer`.
    pub fn unblock(&self, peer: SocketAddr) {
        let mut set = self.set();
        set.remove(&peer);
        self.active
            .store(!set.is_empty() || self.other_faults(), Ordering::Release);
    }

    /// Reconnects this agent to every peer (and lifts a one-way cut).
    pub fn clear(&self) {
        let mut set = self.set();
        set.clear();
        self.deaf.store(false, Ordering::Release);
        self.loss_permille.store(0, Ordering::Release);
        self.active.store(false, Ordering::Release);
    }

    /// A one-way cut: this agent receives nothing while its own datagrams still go out.
    pub fn set_deaf(&self, deaf: bool) {
        let set = self.set();
        self.deaf.store(deaf, Ordering::Release);
        self.active.store(
            deaf || !set.is_empty() || self.loss_permille.load(Ordering::Relaxed) > 0,
            Ordering::Release,
        );
    }

    /// Loses `permille` / 1000 of every datagram this agent sends or receives, drawn from a
    /// generator seeded with `seed` (0 stops the loss).
    pub fn set_loss(&self, permille: u32, seed: u64) {
        let set = self.set();
        self.rng.store(seed | 1, Ordering::Release);
        self.loss_permille
            .store(permille.min(1000), Ordering::Release);
        self.active.store(
            permille > 0 || !set.is_empty() || self.deaf.load(Ordering::Relaxed),
            Ordering::Release,
        );
    }

    /// A one-way cut or random loss is set (besides blocked peers).
    fn other_faults(&self) -> bool {
        self.deaf.load(Ordering::Relaxed) || self.loss_permille.load(Ordering::Relaxed) > 0
    }

    /// One draw of the loss (xorshift64; a race between two draws only repeats a number).
    fn lose(&self) -> bool {
        let p = self.loss_permille.load(Ordering::Relaxed);
        if p == 0 {
            return false;
        }
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        (x % 1000) < u64::from(p)
    }

    /// The blocked addresses.
    pub fn blocked(&self) -> Vec<SocketAddr> {
        let set = self.blocked.read().unwrap_or_else(|p| p.into_inner());
        set.iter().copied().collect()
    }

    fn is_blocked(&self, peer: SocketAddr) -> bool {
        if !self.active.load(Ordering::Relaxed) {
            return false;
        }
        let set = self.blocked.read().unwrap_or_else(|p| p.into_inner());
        set.contains(&peer)
    }

    /// Whether a datagram received from `from` must be dropped (counted when it is).
    pub fn drop_incoming(&self, from: SocketAddr) -> bool {
        let drop = self.active.load(Ordering::Relaxed)
            && (self.deaf.load(Ordering::Relaxed) || self.is_blocked(from) || self.lose());
        if drop {
            self.dropped_in.fetch_add(1, Ordering::Relaxed);
        }
        drop
    }

    /// Whether a datagram to `to` must be dropped instead of sent (counted when it is).
    pub fn drop_outgoing(&self, to: SocketAddr) -> bool {
        let drop = self.is_blocked(to) || (self.active.load(Ordering::Relaxed) && self.lose());
        if drop {
            self.dropped_out.fetch_add(1, Ordering::Relaxed);
        }
        drop
    }

    /// Delays every datagram this agent sends to `peer` by `by` (zero removes the delay).
    pub fn delay(&self, peer: SocketAddr, by: std::time::Duration) {
        let mut d = self.delays.write().unwrap_or_else(|p| p.into_inner());
        if by.is_zero() {
            d.remove(&peer);
        } else {
            d.insert(peer, by);
        }
    }

    /// The added delay of what is sent to `to`, if any.
    pub fn delay_to(&self, to: SocketAddr) -> Option<std::time::Duration> {
        let d = self.delays.read().unwrap_or_else(|p| p.into_inner());
        if d.is_empty() {
            return None;
        }
        d.get(&to).copied()
    }

    /// Datagrams dropped so far: (received, not sent).
    pub fn dropped(&self) -> (u64, u64) {
        (
            self.dropped_in.load(Ordering::Relaxed),
            self.dropped_out.load(Ordering::Relaxed),
        )
    }
}

impl AgentShared {
    /// `epoch` is the instant that maps to `Time(0)` (the node was created with `now()`).
    pub fn new(node: Node, epoch: Instant) -> Self {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let now_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let epoch_unix_ms = now_unix_ms.saturating_sub(epoch.elapsed().as_millis() as u64);
        AgentShared {
            node: Mutex::new(node),
            epoch,
            epoch_unix_ms,
            wake: Notify::new(),
            flushed: Notify::new(),
            events,
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            faults: Faults::default(),
            api_token: std::sync::OnceLock::new(),
            api_exec_checks: std::sync::atomic::AtomicBool::new(false),
            file_meta: Mutex::new(NodeMeta::default()),
            api_load: Default::default(),
            handlers: Default::default(),
            checks: Default::default(),
            registrations: Default::default(),
            persist_turn: Default::default(),
            left_via_api: Notify::new(),
        }
    }

    /// The agent's clock as core time.
    pub fn now(&self) -> Time {
        Time(self.epoch.elapsed().as_millis() as u64)
    }

    /// The same clock in microseconds (`Node::handle_datagram_us`: RTTs on a LAN).
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Wall-clock milliseconds since the Unix epoch at core time `Time(0)`.
    pub fn epoch_unix_ms(&self) -> u64 {
        self.epoch_unix_ms
    }

    /// Read-only access to the node (do not call commands through this).
    /// Waits, until `deadline` at most, for the core to say the leave or the restart
    /// announcement is finished (its `LeaveFinished` or `RestartAnnounced` event;
    /// `Node::leave_finished`). Subscribe `events` before asking for it. Returns whether it
    /// finished in time. The core decides when; every way out of the agent (SIGTERM, with or
    /// without `leave_on_terminate`, and `POST /v1/leave`) waits here.
    pub async fn leave_finished(
        &self,
        mut events: broadcast::Receiver<Arc<Event>>,
        deadline: tokio::time::Instant,
    ) -> bool {
        loop {
            if self.lock().leave_finished() {
                return true;
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return false,
                Ok(Ok(ev))
                    if matches!(
                        ev.kind,
                        EventKind::Local(LocalEvent::LeaveFinished | LocalEvent::RestartAnnounced)
                    ) =>
                {
                    return true
                }
                // Another event, or events missed (the flag is read again).
                Ok(_) => {}
            }
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Node> {
        self.node.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a command on the node with the current time, then wakes the event loop so that
    /// the datagrams, timers and events it produced are flushed.
    pub fn with_node<R>(&self, f: impl FnOnce(&mut Node, Time) -> R) -> R {
        let now = self.now();
        let r = {
            let mut node = self.lock();
            f(&mut node, now)
        };
        self.wake.notify_one();
        r
    }
}

impl crate::agent::checks::CheckHost for AgentShared {
    fn check_states(&self) -> Vec<shoal_core::CheckStatus> {
        self.lock().checks()
    }

    fn on_node(&self, f: &mut dyn FnMut(&mut Node, Time)) {
        self.with_node(f)
    }

    fn check_manager(&self) -> &crate::agent::checks::CheckManager {
        &self.checks
    }
}
