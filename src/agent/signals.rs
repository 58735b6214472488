//! The signal handling of `shoal agent` (`run_until_signal`) and what SIGHUP reloads.
//!
//! Owns which signal does what to a running `Agent`; must not decide anything the core or the
//! reload merge (`agent::reload`) decides.

use crate::agent::logging::LogHandle;
use crate::agent::runtime::{Agent, AgentError};
use crate::config::{AgentArgs, Config};
use std::time::Duration;
use tracing::{error, info};

/// Runs `shoal agent` until a signal: SIGINT/SIGTERM leave gracefully (bounded by
/// `leave_timeout`) and return; SIGHUP reloads tags, services and the log level from the
/// configuration (`args` are re-read, so flags still win over the file).
pub async fn run_until_signal(
    agent: Agent,
    args: &AgentArgs,
    log: Option<&LogHandle>,
    leave_timeout: Duration,
) -> Result<(), AgentError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
        let mut hup = signal(SignalKind::hangup()).map_err(AgentError::Signals)?;
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: leaving"); break; }
                _ = int.recv() => { info!("SIGINT: leaving"); break; }
                _ = hup.recv() => reload(&agent, args, log),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (args, log);
        tokio::signal::ctrl_c().await.map_err(AgentError::Signals)?;
        info!("interrupted: leaving");
    }
    // A second signal during the leave is not waited for: the leave is bounded anyway.
    agent.leave_and_stop(leave_timeout).await;
    Ok(())
}

/// SIGHUP: re-reads the configuration and applies what can change at run time.
pub fn reload(agent: &Agent, args: &AgentArgs, log: Option<&LogHandle>) {
    let cfg = match Config::load(args) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "SIGHUP: configuration not reloaded");
            return;
        }
    };
    if let Some(log) = log {
        if let Err(e) = log.set_level(&cfg.log_level) {
            error!(error = %e, "SIGHUP: log level not changed");
        }
    }
    // Only what changed in the file since it was last read applies: tags and services set
    // through the API survive (see `agent::reload`).
    let new_file = cfg.node_meta();
    let shared = agent.shared();
    let mut file_meta = shared.file_meta.lock().unwrap_or_else(|p| p.into_inner());
    let file_checks = match cfg.service_checks() {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "SIGHUP: configuration not reloaded");
            return;
        }
    };
    let res = shared.with_node(|n, now| {
        let mut merged = crate::agent::reload::merge_meta(n.own_meta(), &file_meta, &new_file);
        let restart = shared.checks.plan_reload(file_checks, &mut merged);
        n.set_meta(now, merged.clone())?;
        shared.checks.apply_reload(restart, &merged, now);
        Ok::<(), shoal_core::NodeError>(())
    });
    match res {
        Ok(()) => {
            *file_meta = new_file;
            info!(
                tags = cfg.tags.len(),
                services = cfg.services.len(),
                log_level = %cfg.log_level,
                "SIGHUP: applied the file's changes to tags and services (API changes kept) \
                 and reloaded the log level (other settings need a restart)"
            )
        }
        Err(e) => error!(error = %e, "SIGHUP: tags and services not applied"),
    }
}
