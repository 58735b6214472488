//! The guard's alert hook: an operator command run on every guard transition.
//!
//! Owns `run_alert_hook`: runs the command with `sh -c`, the details in `SHOAL_GUARD_*`
//! environment variables and the transition as JSON on stdin, bounded in time (the child is
//! killed on timeout). Failures are returned, never panicked, and never affect the guard.
//! Must not decide when to alert (the event loop calls it for each `GuardTransition`).

use shoal_core::GuardTransition;
use std::process::Stdio;
use std::time::Duration;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

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
    let json = serde_json::to_vec(t).unwrap_or_default();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .envs(hook_env(t))
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
}
