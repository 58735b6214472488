//! The seam between the agent's event loop and its local API.
//!
//! Owns `AgentShared`: the node behind a mutex, the agent's clock, the wake-up the API uses
//! to make the loop flush what a command produced, and the broadcast of served-view events.
//! API handlers call `with_node`; only the event loop (`agent::runtime`) drains the node's
//! outputs (datagrams, timers, events). Nothing here decides anything.

use crate::core::{Event, Node, Time};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{broadcast, Notify};

/// Capacity of the event broadcast; a watcher that falls this far behind is told so and
/// resynchronises from the current state.
pub const EVENT_BACKLOG: usize = 4096;

pub struct AgentShared {
    node: Mutex<Node>,
    epoch: Instant,
    /// Wakes the event loop so that it flushes outputs produced by an API command.
    pub wake: Notify,
    /// Notified (`notify_waiters`) by the event loop each time it has flushed the node's
    /// outputs to the socket: an API command that must return "once sent" creates a
    /// `flushed.notified()` future before calling `with_node`, then awaits it (bounded).
    pub flushed: Notify,
    /// Every served-view event, in index order.
    pub events: broadcast::Sender<Event>,
    /// Set once the agent is shutting down (API answers 503 to commands).
    pub shutting_down: std::sync::atomic::AtomicBool,
}

impl AgentShared {
    /// `epoch` is the instant that maps to `Time(0)` (the node was created with `now()`).
    pub fn new(node: Node, epoch: Instant) -> Self {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        AgentShared {
            node: Mutex::new(node),
            epoch,
            wake: Notify::new(),
            flushed: Notify::new(),
            events,
            shutting_down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The agent's clock as core time.
    pub fn now(&self) -> Time {
        Time(self.epoch.elapsed().as_millis() as u64)
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Read-only access to the node (do not call commands through this).
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
