//! Temporary `shoal` binary for manual testing of the agent branch (`shoal agent`,
//! `shoal dev`); the lead rewrites it at merge. All logic lives in the library.

use clap::{Parser, Subcommand};
use shoal::agent::{init_logging, run_until_signal, Agent};
use shoal::config::{AgentArgs, Config};
use shoal::dev::{run_dev, DevArgs};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "Gossip membership agent that fails static"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent
    Agent(AgentArgs),
    /// Start a local cluster of agents on loopback and watch it converge
    Dev(DevArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Agent(args) => {
            let cfg = Config::load(&args)?;
            let log = init_logging(&cfg.log_level, cfg.log_format)?;
            let agent = Agent::start(&cfg).await?;
            run_until_signal(agent, &args, Some(&log), Duration::from_secs(5)).await?;
        }
        Cmd::Dev(args) => run_dev(args).await?,
    }
    Ok(())
}
