//! Event handlers from the config file (`event_handlers`, Serf's `-event-handler`): scripts
//! run on member joins, leaves, failures, updates and reaps, guard and health guard
//! transitions, user events and queries.
//!
//! Owns `Handlers`: one task per handler (two when it also answers queries), fed through
//! bounded channels with `try_send`, so the event loop never waits for a handler (a full
//! channel drops and counts). Events are coalesced: a burst (events closer than
//! `handler_coalesce`, at most `BURST_MAX` long) is one run per event type with every event
//! of the burst as a JSON line on stdin (same-name coalescing user events: the newest only),
//! never one run per member. The event is described in `SHOAL_*` environment variables (as
//! Serf's `SERF_*`). A query runs the handler once per query; its stdout (at most
//! `query_answer_max` bytes) is the answer. A run past `handler_timeout` is killed with its
//! process group and counted. Must not decide anything about membership: it reads events.

use crate::agent::shared::AgentShared;
use crate::config::handlers::{HandlerSpec, HandlerType};
use shoal_core::{Event, EventKind, MemberChange, QueryView, ServedStatus};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc;
use tracing::warn;

/// Events waiting per handler; past it they are dropped and counted.
const QUEUE: usize = 4096;
/// Queries waiting per handler.
const QUERY_QUEUE: usize = 64;
/// A burst is cut into runs at most this long (events keep coming during a storm).
const BURST_MAX: Duration = Duration::from_secs(5);
/// Most events in one run.
const BATCH_MAX: usize = 4096;

/// The handler type of an event, with its name (user events and queries), if any handler
/// type applies.
pub fn classify(ev: &Event) -> Option<(HandlerType, Option<&str>)> {
    Some(match &ev.kind {
        EventKind::Member {
            change,
            previous,
            member,
        } => match change {
            MemberChange::Joined => (HandlerType::MemberJoin, None),
            MemberChange::Meta => (HandlerType::MemberUpdate, None),
            MemberChange::Reaped => (HandlerType::MemberReap, None),
            MemberChange::Status => match member.status {
                ServedStatus::Left => (HandlerType::MemberLeave, None),
                ServedStatus::Down => (HandlerType::MemberFailed, None),
                ServedStatus::Alive
                    if matches!(previous, Some(ServedStatus::Down | ServedStatus::Left)) =>
                {
                    (HandlerType::MemberJoin, None)
                }
                _ => return None,
            },
        },
        EventKind::Guard(_) => (HandlerType::Guard, None),
        EventKind::Health(_) => (HandlerType::Health, None),
        EventKind::UserEvent(e) => (HandlerType::User, Some(e.name.as_str())),
        EventKind::Query(q) => (HandlerType::Query, Some(q.name.as_str())),
        EventKind::Local(_) | EventKind::Outlier(_) => return None,
    })
}

struct Worker {
    spec: Arc<HandlerSpec>,
    events: Option<mpsc::Sender<Arc<Event>>>,
    queries: Option<mpsc::Sender<QueryView>>,
}

/// The running handlers.
pub(crate) struct Handlers {
    workers: Vec<Worker>,
    shared: Arc<AgentShared>,
}

/// How handlers run.
#[derive(Clone)]
pub(crate) struct RunCfg {
    pub timeout: Duration,
    pub coalesce: Duration,
    pub answer_max: usize,
    pub self_name: String,
}

impl Handlers {
    /// Starts one task per handler (and one more for a handler that answers queries).
    pub(crate) fn spawn(
        specs: &[HandlerSpec],
        cfg: RunCfg,
        shared: Arc<AgentShared>,
    ) -> Option<Handlers> {
        if specs.is_empty() {
            return None;
        }
        let mut workers = Vec::new();
        for spec in specs {
            let spec = Arc::new(spec.clone());
            let wants_events = spec.types.iter().any(|t| *t != HandlerType::Query);
            let events = wants_events.then(|| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(event_worker(spec.clone(), cfg.clone(), shared.clone(), rx));
                tx
            });
            let queries = spec.types.contains(&HandlerType::Query).then(|| {
                let (tx, rx) = mpsc::channel(QUERY_QUEUE);
                tokio::spawn(query_worker(spec.clone(), cfg.clone(), shared.clone(), rx));
                tx
            });
            workers.push(Worker {
                spec,
                events,
                queries,
            });
        }
        Some(Handlers { workers, shared })
    }

    /// Hands an event to every handler that wants it; never waits.
    pub(crate) fn offer(&self, ev: &Arc<Event>) {
        let Some((t, name)) = classify(ev) else {
            return;
        };
        let stats = &self.shared.handlers;
        for w in &self.workers {
            if !w.spec.wants(t, name) {
                continue;
            }
            let sent = match (&ev.kind, &w.queries, &w.events) {
                (EventKind::Query(q), Some(tx), _) => {
                    // Only the queries this agent said it answers (it acked them so).
                    q.answering && tx.try_send(q.clone()).is_ok()
                }
                (EventKind::Query(_), None, _) => continue,
                (_, _, Some(tx)) => tx.try_send(ev.clone()).is_ok(),
                (_, _, None) => continue,
            };
            if sent {
                stats.events.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Collects bursts and runs the handler once per event type (user events: per name).
async fn event_worker(
    spec: Arc<HandlerSpec>,
    cfg: RunCfg,
    shared: Arc<AgentShared>,
    mut rx: mpsc::Receiver<Arc<Event>>,
) {
    while let Some(first) = rx.recv().await {
        let mut burst = vec![first];
        let start = tokio::time::Instant::now();
        while burst.len() < BATCH_MAX {
            let quiet = tokio::time::sleep(cfg.coalesce);
            let cap = tokio::time::sleep_until(start + BURST_MAX);
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => burst.push(ev),
                    None => break,
                },
                _ = quiet => break,
                _ = cap => break,
            }
        }
        for (key, events) in group(burst) {
            let env = event_env(&key, &events, &cfg);
            let mut stdin = Vec::new();
            for e in &events {
                if let Ok(line) = serde_json::to_vec(&**e) {
                    stdin.extend_from_slice(&line);
                    stdin.push(b'\n');
                }
            }
            let _ = run(&spec, &cfg, &shared, env, stdin, 0).await;
        }
    }
}

/// A group of one run: the type and, for user events, the name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key(HandlerType, Option<String>);

/// Splits a burst by type (and user event name), in order of first arrival; coalescing user
/// events keep the newest (highest Lamport time) of their name.
fn group(burst: Vec<Arc<Event>>) -> Vec<(Key, Vec<Arc<Event>>)> {
    let mut order: Vec<Key> = Vec::new();
    let mut groups: BTreeMap<Key, Vec<Arc<Event>>> = BTreeMap::new();
    for ev in burst {
        let Some((t, name)) = classify(&ev) else {
            continue;
        };
        let key = Key(
            t,
            name.filter(|_| t == HandlerType::User).map(str::to_string),
        );
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        let g = groups.entry(key).or_default();
        if let EventKind::UserEvent(u) = &ev.kind {
            if u.coalesce {
                let newer = g.iter().any(|x| {
                    matches!(&x.kind, EventKind::UserEvent(o) if o.coalesce && o.ltime > u.ltime)
                });
                if newer {
                    continue;
                }
                g.retain(|x| !matches!(&x.kind, EventKind::UserEvent(o) if o.coalesce));
            }
        }
        g.push(ev);
    }
    order
        .into_iter()
        .filter_map(|k| groups.remove(&k).map(|g| (k, g)))
        .collect()
}

fn event_env(key: &Key, events: &[Arc<Event>], cfg: &RunCfg) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("SHOAL_EVENT", key.0.as_str().to_string()),
        ("SHOAL_SELF_NAME", cfg.self_name.clone()),
        ("SHOAL_EVENT_COUNT", events.len().to_string()),
    ];
    if let Some(EventKind::UserEvent(u)) = events.last().map(|e| &e.kind) {
        env.push(("SHOAL_USER_EVENT", u.name.clone()));
        env.push(("SHOAL_USER_LTIME", u.ltime.to_string()));
        env.push(("SHOAL_USER_ORIGIN", u.origin.clone()));
    }
    env
}

/// Runs the handler once per query; its output is the answer.
async fn query_worker(
    spec: Arc<HandlerSpec>,
    cfg: RunCfg,
    shared: Arc<AgentShared>,
    mut rx: mpsc::Receiver<QueryView>,
) {
    while let Some(q) = rx.recv().await {
        let env = vec![
            ("SHOAL_EVENT", "query".to_string()),
            ("SHOAL_SELF_NAME", cfg.self_name.clone()),
            ("SHOAL_QUERY_NAME", q.name.clone()),
            ("SHOAL_QUERY_ID", q.id.to_string()),
            ("SHOAL_QUERY_LTIME", q.ltime.to_string()),
            ("SHOAL_QUERY_ORIGIN", q.origin.clone()),
        ];
        // The query's own deadline bounds the run too: a late answer is worthless.
        let timeout = cfg.timeout.min(Duration::from_millis(q.timeout_ms));
        let cfg2 = RunCfg {
            timeout,
            ..cfg.clone()
        };
        let stdin = q.payload.clone().into_bytes();
        if let Ok(mut out) = run(&spec, &cfg2, &shared, env, stdin, cfg.answer_max).await {
            out.truncate(cfg.answer_max);
            let r = shared.with_node(|n, now| n.query_answer(now, q.id, out));
            if let Err(e) = r {
                tracing::debug!(error = %e, query = %q.name, "query answer not sent");
            }
        }
    }
}

/// Runs the handler's command with `sh -c` in its own process group, `stdin` written to it,
/// at most `keep` bytes of its stdout kept; killed (the whole group) after the timeout.
async fn run(
    spec: &HandlerSpec,
    cfg: &RunCfg,
    shared: &AgentShared,
    env: Vec<(&'static str, String)>,
    stdin: Vec<u8>,
    keep: usize,
) -> Result<Vec<u8>, ()> {
    let stats = &shared.handlers;
    stats.runs.fetch_add(1, Ordering::Relaxed);
    let child = Command::new("sh")
        .arg("-c")
        .arg(&spec.command)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            warn!(handler = %spec.spec, error = %e, "cannot start event handler");
            return Err(());
        }
    };
    let pgid = child.id();
    let mut input = child.stdin.take();
    let mut output = child.stdout.take();
    let work = async {
        let write = async {
            if let Some(mut s) = input.take() {
                // A handler that does not read stdin closes it early: not an error.
                let _ = s.write_all(&stdin).await;
                let _ = s.shutdown().await;
            }
        };
        let read = async {
            let mut out = Vec::new();
            if let Some(o) = output.as_mut() {
                let _ = o.take(keep as u64 + 1).read_to_end(&mut out).await;
                // Drain the rest so that the handler never blocks on a full pipe.
                let _ = tokio::io::copy(o, &mut tokio::io::sink()).await;
            }
            out
        };
        let (_, out) = tokio::join!(write, read);
        (child.wait().await, out)
    };
    match tokio::time::timeout(cfg.timeout, work).await {
        Err(_) => {
            stats.timeouts.fetch_add(1, Ordering::Relaxed);
            if let Some(pid) = pgid {
                kill_group(pid);
            }
            warn!(
                handler = %spec.spec,
                timeout_ms = cfg.timeout.as_millis() as u64,
                "event handler did not finish in time and was killed"
            );
            Err(())
        }
        Ok((Ok(status), out)) if status.success() => Ok(out),
        Ok((status, _)) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            warn!(handler = %spec.spec, status = ?status, "event handler failed");
            Err(())
        }
    }
}

/// Kills a handler's process group (the shell and whatever it started).
fn kill_group(pid: u32) {
    // `kill -KILL -PGID` through the system's kill: no unsafe code, no extra crate.
    let _ = std::process::Command::new("kill")
        .args(["-s", "KILL", "--"])
        .arg(format!("-{pid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
