//! The signal handling of `shoal agent` (`run_until_signal`) and what SIGHUP reloads.
//!
//! Owns which signal does what to a running `Agent`; must not decide anything the core or the
//! reload merge (`agent::reload`) decides.

use crate::agent::logging::LogHandle;
use crate::agent::runtime::{Agent, AgentError};
use crate::config::{AgentArgs, Config};
use std::time::Duration;
use tracing::{error, info};

/// Runs `shoal agent` until it must stop, and stops it:
/// - SIGTERM (`systemctl stop/restart`, a package upgrade, Kubernetes): a restart, not a
///   decommission. The agent announces "restarting, expect me back within `restart_grace`"
///   and stops without leaving; peers keep serving its services (`restarting`). With
///   `leave_on_terminate` it leaves instead.
/// - SIGINT (Ctrl-C, as Consul's default): leaves gracefully, then stops.
/// - `shoal leave` / `POST /v1/leave`: the node left; the process stops once the leave has
///   spread (two gossip intervals), and `shoal agent` exits 0.
/// - SIGHUP: reloads tags, services, checks and the log level from the configuration (`args`
///   are re-read, so flags still win over the file); the agent keeps running.
///
/// Every way out is bounded by `leave_timeout`. Returns once the agent is stopped.
pub async fn run_until_signal(
    agent: Agent,
    args: &AgentArgs,
    log: Option<&LogHandle>,
    leave_timeout: Duration,
) -> Result<(), AgentError> {
    let shared = agent.shared();
    let left_via_api = shared.left_via_api.notified();
    tokio::pin!(left_via_api);
    #[cfg(unix)]
    let stop = {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
        let mut hup = signal(SignalKind::hangup()).map_err(AgentError::Signals)?;
        loop {
            tokio::select! {
                _ = term.recv() => break Stop::Terminate,
                _ = int.recv() => break Stop::Interrupt,
                _ = &mut left_via_api => break Stop::LeftViaApi,
                _ = hup.recv() => reload(&agent, args, log).await,
            }
        }
    };
    #[cfg(not(unix))]
    let stop = {
        let _ = (args, log);
        tokio::select! {
            r = tokio::signal::ctrl_c() => { r.map_err(AgentError::Signals)?; Stop::Interrupt }
            _ = &mut left_via_api => Stop::LeftViaApi,
        }
    };
    // A second signal meanwhile is not waited for: every way out is bounded anyway.
    match stop {
        Stop::Terminate => {
            if agent.leaves_on_terminate() {
                info!("SIGTERM: leaving the cluster (leave_on_terminate)");
            } else {
                info!(
                    "SIGTERM: stopping for a restart (peers keep serving this node; set \
                     leave_on_terminate to leave instead)"
                );
            }
            agent.terminate(leave_timeout).await;
        }
        Stop::Interrupt => {
            info!("SIGINT: leaving the cluster");
            agent.leave_and_stop(leave_timeout).await;
        }
        Stop::LeftViaApi => {
            info!("left through the API: stopping the agent");
            agent.leave_and_stop(leave_timeout).await;
        }
    }
    Ok(())
}

/// Why the agent stops.
enum Stop {
    Terminate,
    Interrupt,
    LeftViaApi,
}

/// SIGHUP: re-reads the configuration and applies what can change at run time.
pub async fn reload(agent: &Agent, args: &AgentArgs, log: Option<&LogHandle>) {
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
    let file_checks = match cfg.service_checks() {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "SIGHUP: configuration not reloaded");
            return;
        }
    };
    let res = {
        let mut file_meta = shared.file_meta.lock().unwrap_or_else(|p| p.into_inner());
        let res = shared.with_node(|n, now| {
            let mut merged = crate::agent::reload::merge_meta(n.own_meta(), &file_meta, &new_file);
            let restart = shared.checks.plan_reload(n, file_checks, &mut merged);
            n.set_meta(now, merged.clone())?;
            let from_file: Vec<String> = restart.iter().map(|(s, _)| s.clone()).collect();
            shared.checks.apply_reload(n, restart, &merged, now);
            Ok::<_, shoal_core::NodeError>(from_file)
        });
        if res.is_ok() {
            *file_meta = new_file;
        }
        res
    };
    match res {
        Ok(from_file) => {
            {
                // The file's checks now decide for the services whose checks it changed.
                let mut state = shared
                    .registrations
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for s in &from_file {
                    state.api_checks.remove(s);
                }
                state.file_checks = cfg.check_specs();
            }
            let _ = crate::agent::registrations::persist_or_log(&shared, "reload").await;
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
