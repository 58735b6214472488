//! Log setup for the agent: one `tracing` subscriber writing text or JSON lines to stderr,
//! with a filter that can be swapped at run time (SIGHUP reloads the log level).
//!
//! Owns `init_logging` and `LogHandle`, and `log_event`: the one line the event loop logs
//! per member status change (with its cause), guard transition or local event. It must not log per packet or
//! decide anything.

use crate::config::LogFormat;
use shoal_core::{Event, EventKind, LocalEvent, MemberChange};
use std::io::IsTerminal;
use thiserror::Error;
use tracing::{debug, info, warn};
use tracing_subscriber::layer::{Layer, Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

#[derive(Debug, Error)]
pub enum LogError {
    #[error("invalid log level {level:?}: {message} (use error, warn, info, debug, trace or a filter like shoal=debug,warn)")]
    BadLevel { level: String, message: String },
    #[error("a log subscriber is already installed in this process")]
    AlreadySet,
    #[error("cannot change the log level: {0}")]
    Reload(String),
}

/// Changes the log filter of the installed subscriber.
#[derive(Clone)]
pub struct LogHandle {
    handle: reload::Handle<EnvFilter, Registry>,
}

fn filter(level: &str) -> Result<EnvFilter, LogError> {
    EnvFilter::try_new(level).map_err(|e| LogError::BadLevel {
        level: level.to_string(),
        message: e.to_string(),
    })
}

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;

/// Installs the process-wide subscriber: `level` is a `tracing` filter directive.
pub fn init_logging(level: &str, format: LogFormat) -> Result<LogHandle, LogError> {
    let (layer, handle) = reload::Layer::new(filter(level)?);
    let out: Box<dyn Layer<Filtered> + Send + Sync> = match format {
        LogFormat::Text => Box::new(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false),
        ),
        LogFormat::Json => Box::new(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr),
        ),
    };
    tracing_subscriber::registry()
        .with(layer)
        .with(out)
        .try_init()
        .map_err(|_| LogError::AlreadySet)?;
    Ok(LogHandle { handle })
}

impl LogHandle {
    /// Replaces the filter (for example on SIGHUP).
    pub fn set_level(&self, level: &str) -> Result<(), LogError> {
        let f = filter(level)?;
        self.handle
            .reload(f)
            .map_err(|e| LogError::Reload(e.to_string()))
    }
}

/// One log line per member status change, guard transition or local event.
/// `left`: this node has left (then losing its peers is expected, not worth a warning).
pub(crate) fn log_event(ev: &Event, left: bool) {
    match &ev.kind {
        EventKind::Member {
            change,
            previous,
            member,
        } => match change {
            MemberChange::Joined => info!(
                member = %member.name,
                addr = %member.addr,
                status = %member.status,
                "member joined"
            ),
            MemberChange::Status => {
                // One line per transition, with why: `member down: web-3 (suspicion timed
                // out here (our own probe failed); 3 confirmations from a, b, c; ...)`.
                let (reason, why) = match &member.cause {
                    Some(c) => (c.reason.as_str(), format!(" ({})", c.text)),
                    None => ("unknown", String::new()),
                };
                info!(
                    member = %member.name,
                    addr = %member.addr,
                    from = %previous.map(|p| p.as_str()).unwrap_or("unknown"),
                    to = %member.status,
                    reason,
                    "member {}: {}{why}",
                    member.status,
                    member.name
                )
            }
            MemberChange::Meta => debug!(
                member = %member.name,
                version = member.meta_version,
                "member metadata changed"
            ),
            MemberChange::Reaped => info!(member = %member.name, "member forgotten"),
        },
        EventKind::Guard(t) => {
            let r = &t.report;
            if t.to == shoal_core::GuardState::Normal {
                info!(
                    from = t.from.as_str(),
                    to = t.to.as_str(),
                    reason = %r.reason,
                    "guard back to normal"
                );
            } else {
                warn!(
                    from = t.from.as_str(),
                    to = t.to.as_str(),
                    reason = %r.reason,
                    held = r.held,
                    baseline = r.baseline,
                    "guard is {}",
                    t.to.as_str()
                );
            }
        }
        EventKind::Health(t) => {
            let r = &t.report;
            if t.to == shoal_core::GuardState::Normal {
                info!(service = %t.service, reason = %r.reason, "health guard back to normal");
            } else {
                warn!(
                    service = %t.service,
                    reason = %r.reason,
                    held = r.held,
                    instances = r.baseline,
                    "health guard is {}",
                    t.to.as_str()
                );
            }
        }
        EventKind::UserEvent(e) => debug!(
            name = %e.name,
            origin = %e.origin,
            ltime = e.ltime,
            bytes = e.payload.len(),
            "user event"
        ),
        EventKind::Query(q) => debug!(
            name = %q.name,
            origin = %q.origin,
            id = q.id,
            answering = q.answering,
            "query"
        ),
        EventKind::Outlier(t) => match t.action {
            shoal_core::OutlierAction::Restored => info!(
                service = %t.service,
                node = %t.node,
                id = %t.id,
                reason = %t.reason,
                "instance restored"
            ),
            action => warn!(
                service = %t.service,
                node = %t.node,
                id = %t.id,
                reason = %t.reason,
                "instance {}",
                action.as_str()
            ),
        },
        EventKind::Local(l) => match l {
            LocalEvent::Active => info!("connected: has active peers"),
            LocalEvent::Idle if left => debug!("no active peer after leaving"),
            LocalEvent::Idle => warn!(
                "no active peer: re-announcing to seeds and known peers (if this lasts: are \
                 the seeds up and reachable, and do they share this agent's cluster key, \
                 cluster label and a compatible release? their logs name the senders they \
                 refuse, and `shoal info` lists what this agent refused)"
            ),
            LocalEvent::Rejoined { generation } => {
                warn!(generation, "the cluster declared this node down; rejoined")
            }
            LocalEvent::Left => info!("this node left the cluster"),
            LocalEvent::LeaveFinished => debug!("the leave is finished: stopping"),
            LocalEvent::RestartAnnounced => {
                debug!("the restart announcement is finished: stopping")
            }
        },
    }
}
