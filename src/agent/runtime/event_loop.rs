//! The event loop of a started agent: `run_loop` receives datagrams, sleeps until the
//! core's next timeout and wakes for the API, and `flush` hands on what the node produced
//! (datagrams to the socket, events to the broadcast, the alert hook, the handlers and the
//! log, keyring and member-key changes and the snapshot to disk).
//!
//! A child module of `runtime` (it reads `LoopCtx`). It decides nothing the core could
//! decide, and never logs per packet.

use super::{IoStats, LoopCtx};
use crate::agent::datadir;
use crate::agent::logging::log_event;
use crate::agent::shared::AgentShared;
use crate::agent::snapshot;
use shoal_core::{EventKind, GuardTransition};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

/// Receive buffer: larger than any valid datagram so that oversized ones are seen (and
/// counted by the node) rather than silently truncated to a valid length.
const RECV_BUF: usize = 2048;
/// Datagrams handled per wake-up before flushing (keeps latency bounded under a burst).
const RECV_BATCH: usize = 64;

/// Persists a snapshot atomically (off the event loop's thread).
async fn save_snapshot(snap: shoal_core::Snapshot, path: &std::path::Path) {
    let path = path.to_path_buf();
    match tokio::task::spawn_blocking(move || snapshot::save(&path, &snap)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "could not save the snapshot"),
        Err(e) => warn!(error = %e, "snapshot task failed"),
    }
}

/// The event loop. `FAULTS`: whether datagrams to or from peers cut off by the test/chaos
/// hook (`AgentShared::faults`) are dropped; without it the check is compiled out.
pub(super) async fn run_loop<const FAULTS: bool>(
    socket: Arc<UdpSocket>,
    shared: Arc<AgentShared>,
    mut stop: oneshot::Receiver<()>,
    io: Arc<IoStats>,
    ctx: LoopCtx,
) {
    let mut buf = vec![0u8; RECV_BUF];
    let epoch = tokio::time::Instant::from_std(shared.epoch());
    flush::<FAULTS>(&socket, &shared, &io, &ctx).await;
    loop {
        let deadline = shared
            .lock()
            .poll_timeout()
            .map(|t| epoch + Duration::from_millis(t.as_millis()));
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = shared.wake.notified() => {}
            r = socket.recv_from(&mut buf) => match r {
                Ok((len, from)) => {
                    let mut node = shared.lock();
                    if !(FAULTS && shared.faults.drop_incoming(from)) {
                        node.handle_datagram_us(shared.now_us(), from, &buf[..len]);
                    }
                    for _ in 1..RECV_BATCH {
                        match socket.try_recv_from(&mut buf) {
                            Ok((_, from)) if FAULTS && shared.faults.drop_incoming(from) => {}
                            Ok((len, from)) => node.handle_datagram_us(shared.now_us(), from, &buf[..len]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                io.error("receive", &io.recv_errors, &e, None);
                                break;
                            }
                        }
                    }
                }
                Err(e) => io.error("receive", &io.recv_errors, &e, None),
            },
            _ = sleep => {
                let now_us = shared.now_us();
                shared.lock().handle_timeout_us(now_us);
            }
        }
        flush::<FAULTS>(&socket, &shared, &io, &ctx).await;
    }
    // Stopping (a graceful leave, or `Agent::stop`): the view as it is now. A crash of the
    // process saves nothing: the file keeps the last snapshot the node handed out.
    let last = {
        let now = shared.now();
        let mut node = shared.lock();
        node.set_wall_clock(now, ctx.clock.unix_ms());
        node.snapshot(now)
    };
    save_snapshot(last, &ctx.snap_path).await;
    debug!("event loop stopped");
}

/// Sends what the node produced, publishes and logs its events, and saves the snapshot the
/// node hands out on its schedule (`Node::poll_snapshot`, every 10 s while the view changes).
async fn flush<const FAULTS: bool>(
    socket: &Arc<UdpSocket>,
    shared: &AgentShared,
    io: &IoStats,
    ctx: &LoopCtx,
) {
    let (transmits, events, left, keyring, snap, drop_lines, known) = {
        let now = shared.now();
        let mut node = shared.lock();
        // Keep the core's view of the wall clock (seal timestamps) in step with NTP.
        node.set_wall_clock(now, ctx.clock.unix_ms());
        ctx.skew_log.lock().unwrap_or_else(|p| p.into_inner()).note(
            Instant::now(),
            node.take_last_skewed(),
            ctx.replay_window,
        );
        let mut tx = Vec::new();
        while let Some(t) = node.poll_transmit() {
            tx.push(t);
        }
        let mut evs = Vec::new();
        while let Some(e) = node.poll_event() {
            evs.push(e);
        }
        let snap = node.poll_snapshot(now);
        let drop_lines = ctx.drop_log.lock().unwrap_or_else(|p| p.into_inner()).poll(
            Instant::now(),
            node.stats().dropped_total(),
            node.drops(),
        );
        (
            tx,
            evs,
            node.has_left(),
            node.take_keyring_change(),
            snap,
            drop_lines,
            node.take_bindings_change(),
        )
    };
    if let Some(known) = known {
        ctx.known.save(known);
    }
    for line in &drop_lines {
        line.log();
    }
    if let Some(snap) = snap {
        save_snapshot(snap, &ctx.snap_path).await;
    }
    if let Some(ring) = keyring {
        match datadir::save_keyring(&ctx.keyring_file, &ring) {
            Ok(()) => info!(
                primary = %ring.primary().id(),
                keys = ring.keys().len(),
                "keyring changed and saved"
            ),
            Err(e) => error!(error = %e, "keyring changed but could not be saved"),
        }
    }
    for t in transmits {
        if FAULTS && shared.faults.drop_outgoing(t.dst) {
            continue;
        }
        if let Some(by) = FAULTS.then(|| shared.faults.delay_to(t.dst)).flatten() {
            let socket = socket.clone();
            tokio::spawn(async move {
                tokio::time::sleep(by).await;
                let _ = socket.send_to(&t.data, t.dst).await;
            });
            continue;
        }
        if let Err(e) = socket.send_to(&t.data, t.dst).await {
            io.error("send", &io.send_errors, &e, Some(t.dst));
        }
    }
    for ev in events {
        log_event(&ev, left);
        match (&ev.kind, &ctx.alerts) {
            (EventKind::Guard(t), Some(alerts)) => alerts.push(t.clone(), None),
            (EventKind::Health(h), Some(alerts)) => alerts.push(
                GuardTransition {
                    from: h.from,
                    to: h.to,
                    report: h.report.clone(),
                },
                Some(h.service.clone()),
            ),
            (EventKind::Outlier(t), Some(alerts)) => {
                alerts.push_alert(crate::agent::alert::Alert::Outlier(t.clone()))
            }
            _ => {}
        }
        let ev = std::sync::Arc::new(ev);
        if let Some(h) = &ctx.handlers {
            h.offer(&ev);
        }
        // No receiver is fine: nobody is watching.
        let _ = shared.events.send(ev);
    }
    shared.flushed.notify_waiters();
}
