//! The clap definitions of the client commands: the flags every command shares
//! (`ClientArgs`: `--api`, `--format`), the verbs (`ClientCommand`) and their arguments, and
//! the agent's `--help` with each flag's environment variable. `cli/mod.rs` runs them.
//!
//! Names, flags and their meaning are a contract: add, never rename. Must not talk to the
//! agent nor print anything.

use super::{coords, events, health, report};

/// Default API address of the client commands.
pub const DEFAULT_API: &str = "unix:/var/lib/shoal/shoal.sock";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    #[default]
    Table,
    /// JSON (watch: one JSON object per line).
    Json,
}

/// Options shared by every client command.
#[derive(Clone, Debug, clap::Args)]
pub struct ClientArgs {
    /// Where the agent's API listens: unix:PATH or http://127.0.0.1:PORT.
    #[arg(long, env = "SHOAL_API", default_value = DEFAULT_API, global = true, value_name = "ADDR")]
    pub api: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,
}

/// `shoal agent --help` with the environment variable of each flag (`[env: SHOAL_NAME]`),
/// and the variables without a flag after the options, all from the key table
/// (`config::keys`). The table reads the environment itself (comma lists, an empty cluster
/// label kept), so the flags do not use clap's `env` (which would read the variables a
/// second time, by other rules): only `--encrypt` does, to hide its value.
fn agent_env_help(mut cmd: clap::Command) -> clap::Command {
    let mut env_only = Vec::new();
    for key in crate::config::keys::all() {
        let Some(env) = key.env else { continue };
        let flag = key.flag.and_then(|long| {
            cmd.get_arguments()
                .find(|a| a.get_long() == Some(long.trim_start_matches("--")))
                .map(|a| (a.get_id().clone(), a.get_env().is_some()))
        });
        match flag {
            // clap shows its own `[env: ...]`.
            Some((_, true)) => {}
            Some((id, false)) => {
                let help = format!("{} [env: {env}]", key.doc.trim());
                cmd = cmd.mut_arg(id, |a| a.help(help));
            }
            None => env_only.push(format!("  {env:<22} {} ({})", key.doc.trim(), key.path)),
        }
    }
    let mut after = String::from(
        "Precedence: defaults < the config file (--config) < environment variables < flags.",
    );
    if !env_only.is_empty() {
        after.push_str("\n\nEnvironment variables without a flag:\n");
        after.push_str(&env_only.join("\n"));
    }
    cmd.after_help(after)
}

/// The `shoal` command with the client's global flags (`--api`, `--format`) left out of the
/// help of the verbs that do not take them: `agent` (its own `--api` is the socket it
/// serves; no `--format`), `dev` and `keygen`. Each gets a hidden flag of the same name and
/// type, which keeps the global one from reaching it (clap propagates a global flag only to
/// subcommands without one of that name): given there, it is accepted and ignored, as before.
pub fn hide_client_flags(cmd: clap::Command) -> clap::Command {
    let cmd = cmd.mut_subcommand("agent", agent_env_help);
    let api = || clap::Arg::new("api").long("api").hide(true);
    let format = || {
        clap::Arg::new("format")
            .long("format")
            .value_parser(clap::builder::EnumValueParser::<Format>::new())
            .hide(true)
    };
    cmd.mut_subcommand("agent", |c| c.arg(format()))
        .mut_subcommand("dev", |c| c.arg(api()).arg(format()))
        .mut_subcommand("keygen", |c| c.arg(api()).arg(format()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GuardAction {
    /// Freeze the served view now (operator override, logged by the agent).
    Freeze,
    /// Thaw now: release held members (operator override, logged by the agent).
    Thaw,
}

/// The client commands (a stable contract: do not rename or change flags).
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// List the members this agent serves.
    Members {
        /// Only members with this status (alive, suspect, held, restarting, left, down);
        /// repeatable or a comma list.
        #[arg(long, value_name = "S")]
        status: Vec<String>,
        /// Only members whose name matches this regex (matches the whole name).
        #[arg(long, value_name = "RE")]
        name: Option<String>,
        /// Only members with tag KEY whose value matches RE (the whole value); repeatable.
        #[arg(long, value_name = "KEY=RE")]
        tag: Vec<String>,
        /// Add a WHY column: the cause of each member's status (who suspected it,
        /// confirmations, last heard, refutation, the guard's decision).
        #[arg(long)]
        why: bool,
    },
    /// Explain a member's status: its last transitions, each with its time and cause.
    Explain {
        /// The member's name.
        node: String,
    },
    /// Ask the agent to join the cluster through these addresses (IP:PORT or host:PORT).
    Join {
        #[arg(required = true, value_name = "ADDR")]
        addrs: Vec<String>,
    },
    /// Leave the cluster gracefully (a decommission); returns once the leave has been sent.
    /// The agent then stops and exits (SIGTERM, by contrast, restarts: see docs/operations.md).
    Leave,
    /// Set or delete tags of this node (without options: show them).
    Tags {
        /// Set a tag; repeatable.
        #[arg(long, value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Delete a tag; repeatable.
        #[arg(long, value_name = "KEY")]
        delete: Vec<String>,
    },
    /// List services and their instances (or the instances of one service), with each
    /// instance's health and check output.
    Services {
        /// Only this service.
        name: Option<String>,
        /// Only instances in the passing view (passing, or held by the health guard).
        #[arg(long)]
        passing: bool,
    },
    /// Register (or replace) a service of this node, optionally with health checks.
    Register(health::RegisterArgs),
    /// Deregister a service instance of this node (its checks stop).
    Deregister {
        /// The instance id (or the service's name when it has one instance on this node).
        #[arg(value_name = "ID")]
        name: String,
    },
    /// List this agent's health checks with their status and output.
    Checks,
    /// Report a ttl check's status: pass, warn or fail.
    Check {
        /// The check's id (see `shoal checks`).
        id: String,
        #[arg(value_enum)]
        action: health::TtlAction,
        /// Output to record with the status.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Report the outcomes of calls to an instance (outlier ejection: docs/outliers.md).
    Report(report::ReportArgs),
    /// Stream changes of the served view as they happen.
    Watch,
    /// Fire a user event to every member (Serf's `serf event`).
    Event(events::EventArgs),
    /// List the recent user events this agent received.
    Events,
    /// Ask the matching members a question and collect their answers (Serf's `serf query`).
    Query(events::QueryCmdArgs),
    /// Estimated round trip between two members, or from this agent (Serf's `serf rtt`).
    Rtt(coords::RttArgs),
    /// Show this node, its figures and the guard.
    Info,
    /// Remove a failed or held member on every agent (Serf's force-leave).
    #[command(name = "force-leave")]
    ForceLeave {
        /// The member's name.
        node: String,
    },
    /// Show the guard, or override it (freeze | thaw).
    Guard {
        #[arg(value_enum)]
        action: Option<GuardAction>,
        /// With thaw: thaw every agent this one reaches, not only this one (sent sealed
        /// under the cluster key; each agent takes one thaw per 10 s).
        #[arg(long)]
        all: bool,
    },
    /// The cluster keyring: list the key ids, or install, use (make primary) or remove a
    /// key on every agent (reports the agents that did not confirm).
    Keys {
        #[command(subcommand)]
        action: Option<KeysAction>,
    },
}

/// `shoal keys` actions.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum KeysAction {
    /// The key ids of this agent's keyring (the keys themselves are never shown).
    List,
    /// Add a key to every agent's keyring (accepted, not yet used to send).
    Install(KeyArg),
    /// Make an installed key the primary one (used to send) on every agent.
    Use(KeyArg),
    /// Remove a key from every agent's keyring (not the primary); it is retired: no agent
    /// accepts it again.
    Remove(KeyArg),
    /// The member keys this agent knows: which key signs each name's record.
    Members,
    /// Forget the member key bound to NAME on this agent (a host rebuilt with a new key
    /// under the same name): its next signed record binds it again. Run it on every agent.
    Forget { name: String },
}

/// The key of a `shoal keys` change: from a file or stdin (`--from-file`), or, visible to
/// every local user in the process list, as an argument.
#[derive(Clone, Debug, clap::Args)]
pub struct KeyArg {
    /// The key (base64, from `shoal keygen`); prefer --from-file: an argument shows in `ps`
    #[arg(required_unless_present = "from_file", conflicts_with = "from_file")]
    pub key: Option<String>,
    /// Read the key from this file (`-`: standard input), as `shoal keygen` writes it
    #[arg(long, value_name = "PATH")]
    pub from_file: Option<std::path::PathBuf>,
}

impl KeyArg {
    /// The key text: the argument, or the file's (or stdin's) content, trimmed; or what is
    /// wrong, in words.
    pub fn read(&self, stdin: &mut dyn std::io::Read) -> Result<String, String> {
        let text = match (&self.key, &self.from_file) {
            (Some(k), _) => k.clone(),
            (None, Some(p)) if p.as_os_str() == "-" => {
                let mut s = String::new();
                stdin
                    .read_to_string(&mut s)
                    .map_err(|e| format!("cannot read the key from standard input: {e}"))?;
                s
            }
            (None, Some(p)) => std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read the key file {}: {e}", p.display()))?,
            (None, None) => return Err("give the key: --from-file PATH (or - for stdin)".into()),
        };
        let text = text.trim().to_string();
        if text.is_empty() {
            return Err("the key is empty (`shoal keygen` prints one)".into());
        }
        Ok(text)
    }
}
