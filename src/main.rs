//! The `shoal` binary: `shoal agent`, the local dev cluster (`shoal dev`), and the client
//! commands that talk to a local agent's API. All logic lives in the library; this file only
//! parses the command line and turns errors into exit codes (`anyhow` at the edge).

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use shoal::agent::{init_logging, run_until_signal, Agent};
use shoal::api::{self, ApiOptions};
use shoal::cli::{ClientArgs, ClientCommand};
use shoal::config::{AgentArgs, Config};
use shoal::dev::{run_dev_with, DevArgs, DevCluster, DevHook};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "Gossip membership agent that fails static: it keeps serving the last-known-good \
             view when a partition would remove too many peers"
)]
struct Cli {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent (one per host)
    Agent(Box<AgentArgs>),
    /// Start a local cluster of agents on loopback and watch it converge
    Dev(DevArgs),
    /// Print a new random cluster key (base64): save it to a file for `--encrypt-file` or
    /// `shoal keys install --from-file` (`shoal keygen > key && chmod 600 key`)
    Keygen,
    #[command(flatten)]
    Client(ClientCommand),
}

/// How long a graceful leave may take on SIGINT/SIGTERM before the agent exits anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// `key_on_command_line`: `--encrypt` was given as a flag (not from the environment or the
/// config file), so every local user can read the key in /proc/PID/cmdline.
async fn agent(args: AgentArgs, key_on_command_line: bool) -> anyhow::Result<()> {
    let cfg = Config::load(&args)?;
    let log = init_logging(&cfg.log_level, cfg.log_format)?;
    if key_on_command_line {
        tracing::warn!(
            "--encrypt puts the cluster key on the command line, where every local user can \
             read it (/proc/PID/cmdline, ps): pass --encrypt-file FILE (a file of mode 0600) \
             instead"
        );
    }
    let agent = Agent::start(&cfg).await?;
    let reach = api::limits::Reach::from_listen_remote(cfg.listen_remote);
    let api = api::spawn(
        agent.shared(),
        ApiOptions {
            unix: Some(cfg.api.clone()),
            http: cfg.api_http,
            reach,
            limits: cfg.api_server.limits,
            socket: cfg.api_server.socket.clone(),
        },
    )
    .await?;
    tracing::info!(api = %cfg.api.display(), http = ?cfg.api_http, "local API listening");
    let consul = match cfg.consul_api {
        Some(addr) => Some(
            api::consul::spawn_reach(agent.shared(), addr, cfg.api_server.limits, reach).await?,
        ),
        None => None,
    };
    let dns = match cfg.dns {
        Some(addr) => {
            let opts = shoal::dns::DnsOptions {
                ttl: cfg.dns_ttl,
                reach,
                zone: shoal::dns::answer::Zone::parse(&cfg.dns_domain)
                    .map_err(anyhow::Error::msg)?,
            };
            Some(shoal::dns::spawn_with(agent.shared(), addr, opts).await?)
        }
        None => None,
    };
    // Every listener is bound and served: a `Type=notify` unit is started now.
    shoal::agent::notify::notify_or_warn("READY=1");
    // STOPPING=1 as soon as SIGTERM or SIGINT arrives (the agent then leaves and closes its
    // listeners), or when the agent stops for another reason.
    let stopping = tokio::spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            shoal::agent::notify::notify_or_warn("STOPPING=1");
        }
    });
    let res = run_until_signal(agent, &args, Some(&log), LEAVE_TIMEOUT).await;
    if !stopping.is_finished() {
        stopping.abort();
        shoal::agent::notify::notify_or_warn("STOPPING=1");
    }
    if let Some(d) = dns {
        d.shutdown().await;
    }
    if let Some(c) = consul {
        c.shutdown().await;
    }
    api.shutdown().await;
    Ok(res?)
}

/// Serves each dev agent's API on its own socket, so that a newcomer can point the client
/// commands at any of them while the cluster runs.
fn dev_api_hook() -> DevHook {
    Box::new(|cluster: &DevCluster| {
        let agents: Vec<_> = cluster
            .shareds()
            .into_iter()
            .zip(cluster.api_paths())
            .collect();
        tokio::spawn(async move {
            let mut handles = Vec::new();
            for (shared, path) in agents {
                let opts = ApiOptions {
                    unix: Some(path.clone()),
                    ..Default::default()
                };
                match api::spawn(shared, opts).await {
                    Ok(h) => handles.push(h),
                    Err(e) => eprintln!("shoal dev: API on {} not started: {e}", path.display()),
                }
            }
            // Keep the APIs up for the life of the dev cluster (dropped at exit).
            std::future::pending::<()>().await;
            drop(handles);
        });
        Ok(())
    })
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = shoal::cli::hide_client_flags(Cli::command()).get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // The client's global `--api` (default: the system socket) shares the agent's `--api`:
    // an agent not given one listens at <data-dir>/shoal.sock, as documented, not at the
    // client's default.
    if let (Cmd::Agent(args), Some(("agent", m))) = (&mut cli.cmd, matches.subcommand()) {
        if m.value_source("api") == Some(clap::parser::ValueSource::DefaultValue) {
            args.api = None;
        }
    }
    // One agent is one event loop: a single-threaded runtime (plus tokio's blocking pool,
    // used for snapshot writes) keeps its memory small (no worker threads, their stacks and
    // malloc arenas) and loses little: the loop's work is a few microseconds per datagram;
    // the served view costs about 5 us per member to build (under the node's lock, on any
    // runtime) and 1 us to serialise, which now shares the loop's thread (about 10 ms for
    // 10,000 members; see `cargo bench --bench datagram_path`). `shoal dev` runs many agents in one process and
    // keeps the multi-threaded runtime.
    let key_on_command_line = matches.subcommand().is_some_and(|(name, m)| {
        name == "agent" && m.value_source("encrypt") == Some(clap::parser::ValueSource::CommandLine)
    });
    let rt = match cli.cmd {
        Cmd::Agent(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shoal: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(cli, key_on_command_line))
}

async fn run(cli: Cli, key_on_command_line: bool) -> ExitCode {
    let res = match cli.cmd {
        Cmd::Agent(args) => agent(*args, key_on_command_line)
            .await
            .map(|_| ExitCode::SUCCESS),
        Cmd::Dev(args) => run_dev_with(args, Some(dev_api_hook()))
            .await
            .map(|_| ExitCode::SUCCESS),
        Cmd::Keygen => shoal::agent::datadir::generate_key()
            .map(|k| {
                println!("{}", k.to_base64());
                ExitCode::SUCCESS
            })
            .map_err(|e| anyhow::anyhow!("cannot draw a random key: {e}")),
        Cmd::Client(cmd) => shoal::cli::run(cli.client, cmd).await,
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shoal: {e:#}");
            ExitCode::FAILURE
        }
    }
}
