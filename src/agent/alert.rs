//! The guard's alert hook: an operator command run on every guard transition.
//!
//! Owns `run_alert_hook`: runs the command with `sh -c`, the details in `SHOAL_GUARD_*`
//! environment variables and the transition as JSON on stdin, bounded in time (the child is
//! killed on timeout). Failures are returned, never panicked, and never affect the guard.
//! Must not decide when to alert (the event loop calls it for each `GuardTransition`, for
//! each transition of a service's health guard with `SHOAL_GUARD_SERVICE` set, and for each
//! outlier ejection, restoration or cap with `SHOAL_ALERT=outlier` and `SHOAL_OUTLIER_*`).
//!
//! Also owns `AlertQueue`, the event loop's queue of transitions for the hook: one run at a
//! time, in transition order, bounded (the oldest dropped first).

use shoal_core::{GuardTransition, OutlierTransition};
use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tracing::warn;

#[derive(Debug, Error)]
pub enum AlertError {
    #[error("cannot start alert hook: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("alert hook did not finish within {0:?} and was killed")]
    Timeout(Duration),
    #[error("alert hook failed: {0}")]
    Wait(#[source] std::io::Error),
    #[error("alert hook exited with {status}: {stderr}")]
    Failed { status: String, stderr: String },
}

/// Environment given to the hook for a transition.
pub fn hook_env(t: &GuardTransition) -> Vec<(&'static str, String)> {
    let r = &t.report;
    vec![
        ("SHOAL_GUARD_STATE", t.to.as_str().to_string()),
        ("SHOAL_GUARD_PREVIOUS", t.from.as_str().to_string()),
        ("SHOAL_GUARD_REASON", r.reason.clone()),
        ("SHOAL_GUARD_HELD", r.held.to_string()),
        ("SHOAL_GUARD_WOULD_HOLD", r.would_hold.to_string()),
        ("SHOAL_GUARD_BASELINE", r.baseline.to_string()),
        ("SHOAL_GUARD_ESCALATED", r.escalated.to_string()),
        ("SHOAL_GUARD_SINCE_MS", r.since_ms.to_string()),
        (
            "SHOAL_GUARD_MODE",
            serde_json::to_value(r.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        ),
    ]
}

/// Runs `cmd` with `sh -c` for transition `t`, waiting at most `timeout`.
pub async fn run_alert_hook(
    cmd: &str,
    t: &GuardTransition,
    timeout: Duration,
) -> Result<(), AlertError> {
    run_alert_hook_for(cmd, t, None, timeout).await
}

/// As `run_alert_hook`; `service` set: a transition of that service's health guard
/// (`SHOAL_GUARD_SERVICE` in the environment, `"service"` in the JSON).
pub async fn run_alert_hook_for(
    cmd: &str,
    t: &GuardTransition,
    service: Option<&str>,
    timeout: Duration,
) -> Result<(), AlertError> {
    let json = match service {
        None => serde_json::to_vec(t),
        Some(s) => serde_json::to_vec(&serde_json::json!({
            "service": s,
            "from": t.from,
            "to": t.to,
            "report": t.report,
        })),
    }
    .unwrap_or_default();
    let mut env = hook_env(t);
    env.push(("SHOAL_ALERT", "guard".to_string()));
    if let Some(s) = service {
        env.push(("SHOAL_GUARD_SERVICE", s.to_string()));
    }
    run_hook(cmd, env, json, timeout).await
}

/// Environment given to the hook for an outlier transition.
pub fn outlier_env(t: &OutlierTransition) -> Vec<(&'static str, String)> {
    let e = t.ejection.as_ref();
    vec![
        ("SHOAL_ALERT", "outlier".to_string()),
        ("SHOAL_OUTLIER_ACTION", t.action.as_str().to_string()),
        ("SHOAL_OUTLIER_SERVICE", t.service.clone()),
        ("SHOAL_OUTLIER_NODE", t.node.clone()),
        ("SHOAL_OUTLIER_ID", t.id.clone()),
        ("SHOAL_OUTLIER_REASON", t.reason.clone()),
        (
            "SHOAL_OUTLIER_UNTIL_MS",
            e.map(|e| e.until_ms.to_string()).unwrap_or_default(),
        ),
        (
            "SHOAL_OUTLIER_COUNT",
            e.map(|e| e.count.to_string()).unwrap_or_default(),
        ),
    ]
}

/// Runs `cmd` with `sh -c` for outlier transition `t` (`{"outlier": t}` on stdin).
pub async fn run_outlier_hook(
    cmd: &str,
    t: &OutlierTransition,
    timeout: Duration,
) -> Result<(), AlertError> {
    let json = serde_json::to_vec(&serde_json::json!({ "outlier": t })).unwrap_or_default();
    run_hook(cmd, outlier_env(t), json, timeout).await
}

async fn run_hook(
    cmd: &str,
    env: Vec<(&'static str, String)>,
    json: Vec<u8>,
    timeout: Duration,
) -> Result<(), AlertError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(AlertError::Spawn)?;
    let mut stdin = child.stdin.take();
    let run = async move {
        if let Some(mut s) = stdin.take() {
            // A hook that does not read stdin closes it early: not an error.
            let _ = s.write_all(&json).await;
            let _ = s.shutdown().await;
        }
        child.wait_with_output().await
    };
    match tokio::time::timeout(timeout, run).await {
        // Dropping the future drops the child, which kills it (`kill_on_drop`).
        Err(_) => Err(AlertError::Timeout(timeout)),
        Ok(Err(e)) => Err(AlertError::Wait(e)),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            stderr.truncate(512);
            Err(AlertError::Failed {
                status: out.status.to_string(),
                stderr,
            })
        }
    }
}

/// The alert hook is killed after this long.
const ALERT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Guard transitions waiting for the alert hook; beyond this the oldest are dropped (the
/// newest state is what an alerting system must end with).
const ALERT_QUEUE: usize = 64;
/// Outlier alerts waiting; kept apart and run only when no guard transition waits, so that a
/// storm of ejections (a shared dependency down) never delays nor evicts the guard's alert.
const OUTLIER_QUEUE: usize = 16;

/// What the hook is run for.
pub(crate) enum Alert {
    /// A guard transition, with the service for a health guard's.
    Guard(GuardTransition, Option<String>),
    /// An outlier ejection, restoration or cap.
    Outlier(OutlierTransition),
}

/// Runs the alert hook for each guard transition, one at a time and in transition order, so
/// that the last run always tells the current state (concurrent runs could finish in any
/// order and leave an alerting system believing the guard is still frozen).
pub(crate) struct AlertQueue {
    /// Guard transitions first, outlier alerts second (see [`OUTLIER_QUEUE`]).
    pending: Mutex<Pending>,
    wake: tokio::sync::Notify,
    closed: AtomicBool,
}

#[derive(Default)]
struct Pending {
    guard: VecDeque<Alert>,
    outlier: VecDeque<Alert>,
}

impl Pending {
    fn pop(&mut self) -> Option<Alert> {
        self.guard.pop_front().or_else(|| self.outlier.pop_front())
    }
}

impl AlertQueue {
    /// Starts the task that runs `cmd`; it ends once the queue is closed and drained.
    pub(crate) fn spawn(cmd: String) -> Arc<AlertQueue> {
        let q = Arc::new(AlertQueue {
            pending: Mutex::new(Pending::default()),
            wake: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
        });
        let worker = q.clone();
        tokio::spawn(async move {
            loop {
                let next = worker.lock().pop();
                match next {
                    Some(Alert::Guard(t, service)) => {
                        if let Err(e) =
                            run_alert_hook_for(&cmd, &t, service.as_deref(), ALERT_HOOK_TIMEOUT)
                                .await
                        {
                            warn!(error = %e, to = t.to.as_str(), "alert hook failed");
                        }
                    }
                    Some(Alert::Outlier(t)) => {
                        if let Err(e) = run_outlier_hook(&cmd, &t, ALERT_HOOK_TIMEOUT).await {
                            warn!(error = %e, action = t.action.as_str(), "alert hook failed");
                        }
                    }
                    None if worker.closed.load(Ordering::Acquire) => break,
                    // `notify_one` keeps a permit when nobody waits: no wake-up is lost.
                    None => worker.wake.notified().await,
                }
            }
        });
        q
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn push(&self, t: GuardTransition, service: Option<String>) {
        self.push_alert(Alert::Guard(t, service));
    }

    pub(crate) fn push_alert(&self, alert: Alert) {
        let guard = matches!(alert, Alert::Guard(..));
        let dropped = {
            let mut p = self.lock();
            let (q, bound) = if guard {
                (&mut p.guard, ALERT_QUEUE)
            } else {
                (&mut p.outlier, OUTLIER_QUEUE)
            };
            q.push_back(alert);
            let over = q.len().saturating_sub(bound);
            q.drain(..over);
            over
        };
        if dropped > 0 {
            let what = if guard {
                "older guard transitions"
            } else {
                "older outlier ejections and restorations"
            };
            warn!(dropped, "the alert hook is too slow: {what} not alerted");
        }
        self.wake.notify_one();
    }

    /// No more transitions: the task runs what is queued, then ends.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::{GuardMode, GuardReport, GuardState};
    use std::time::Instant;

    fn transition() -> GuardTransition {
        GuardTransition {
            from: GuardState::Normal,
            to: GuardState::Frozen,
            report: GuardReport {
                mode: GuardMode::Enforce,
                state: GuardState::Frozen,
                since_ms: 42,
                reason: "6 of 10 peers lost in 9 s, limit 40%".into(),
                held: 6,
                would_hold: 6,
                baseline: 10,
                escalated: false,
            },
        }
    }

    #[tokio::test]
    async fn hook_gets_env_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let cmd = format!(
            "printf '%s|%s|%s|%s\\n' \"$SHOAL_GUARD_STATE\" \"$SHOAL_GUARD_PREVIOUS\" \
             \"$SHOAL_GUARD_HELD\" \"$SHOAL_GUARD_REASON\" > '{0}'; cat >> '{0}'",
            out.display()
        );
        run_alert_hook(&cmd, &transition(), Duration::from_secs(10))
            .await
            .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let (first, rest) = text.split_once('\n').unwrap();
        assert_eq!(
            first,
            "frozen|normal|6|6 of 10 peers lost in 9 s, limit 40%"
        );
        let back: GuardTransition = serde_json::from_str(rest).unwrap();
        assert_eq!(back, transition());
    }

    #[tokio::test]
    async fn outlier_hook_gets_its_env_and_json() {
        use shoal_core::{Ejection, Outcomes, OutlierAction};
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let t = OutlierTransition {
            service: "web".into(),
            node: "n3".into(),
            id: "web".into(),
            action: OutlierAction::Ejected,
            reason: "20 of 25 calls failed".into(),
            ejection: Some(Ejection {
                reason: "20 of 25 calls failed".into(),
                since_ms: 1000,
                until_ms: 31_000,
                count: 1,
            }),
            window: Outcomes {
                success: 5,
                error: 20,
                timeout: 0,
            },
        };
        let cmd = format!(
            "printf '%s|%s|%s|%s|%s|%s\\n' \"$SHOAL_ALERT\" \"$SHOAL_OUTLIER_ACTION\" \
             \"$SHOAL_OUTLIER_SERVICE\" \"$SHOAL_OUTLIER_NODE\" \"$SHOAL_OUTLIER_UNTIL_MS\" \
             \"$SHOAL_OUTLIER_COUNT\" > '{0}'; cat >> '{0}'",
            out.display()
        );
        run_outlier_hook(&cmd, &t, Duration::from_secs(10))
            .await
            .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let (first, rest) = text.split_once('\n').unwrap();
        assert_eq!(first, "outlier|ejected|web|n3|31000|1");
        let back: serde_json::Value = serde_json::from_str(rest).unwrap();
        let back: OutlierTransition = serde_json::from_value(back["outlier"].clone()).unwrap();
        assert_eq!(back, t);
    }

    #[tokio::test]
    async fn slow_hook_is_killed_and_failures_are_errors() {
        let started = Instant::now();
        let err = run_alert_hook("sleep 30", &transition(), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, AlertError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(20));
        let err = run_alert_hook(
            "echo boom >&2; exit 3",
            &transition(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        match err {
            AlertError::Failed { stderr, .. } => assert_eq!(stderr.trim(), "boom"),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn a_storm_of_outlier_alerts_never_evicts_nor_delays_the_guards() {
        use shoal_core::{Outcomes, OutlierAction};
        let outlier = |i: usize| {
            Alert::Outlier(OutlierTransition {
                service: "web".into(),
                node: format!("n{i}"),
                id: "web".into(),
                action: OutlierAction::Ejected,
                reason: "failing".into(),
                ejection: None,
                window: Outcomes::default(),
            })
        };
        let q = AlertQueue {
            pending: Mutex::new(Pending::default()),
            wake: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
        };
        for i in 0..50 {
            q.push_alert(outlier(i));
        }
        q.push(transition(), None);
        for i in 50..100 {
            q.push_alert(outlier(i));
        }
        let mut p = q.lock();
        assert_eq!(p.guard.len(), 1);
        assert_eq!(
            p.outlier.len(),
            OUTLIER_QUEUE,
            "outlier alerts are bounded apart"
        );
        // The guard's transition runs first, then the newest outlier alerts.
        assert!(matches!(p.pop(), Some(Alert::Guard(..))));
        match p.pop() {
            Some(Alert::Outlier(t)) => assert_eq!(t.node, format!("n{}", 100 - OUTLIER_QUEUE)),
            _ => panic!("an outlier alert"),
        }
    }
}
