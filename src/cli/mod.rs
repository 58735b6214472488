//! The client commands of the `shoal` binary (`members`, `explain`, `join`, `leave`, `tags`,
//! `services`, `watch`, `info`, `guard`): their clap definitions and what they print.
//!
//! Owns argument parsing of those commands, table and JSON output, and exit codes. Talks to
//! the agent only through `crate::client`; must not reach into the core or the agent, and
//! must keep the command-line contract (names, flags, the `--format json` shapes) stable:
//! tools outside the project rely on it.
//!
//! `ClientArgs` is meant to be flattened into the top-level parser; its flags are global so
//! that `shoal members --format json` works. A subcommand that defines its own `api` argument
//! (the agent's `--api`) keeps it: clap does not propagate a global argument over one with the
//! same id.

use crate::api::types::*;
use crate::client::{Client, ClientError, MemberQuery, Watch};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

/// The commands' clap definitions: the shared flags, the verbs and their arguments.
mod args;
/// `rtt` (Serf's `serf rtt`: network coordinates).
pub mod coords;
/// `event`, `events` and `query` (Serf's user events and queries).
pub mod events;
/// `register`, `checks`, `check` and the health column (their argument types are public).
pub mod health;
/// The human text formats (tables, watch lines).
mod output;
pub mod report;
pub use args::{
    hide_client_flags, ClientArgs, ClientCommand, Format, GuardAction, KeyArg, KeysAction,
    DEFAULT_API,
};
pub use output::describe;
use output::{
    explain_text, guard_banner, guard_table, info_table, keys_table, members_table, services_table,
    table,
};

/// Runs a client command, printing to stdout and errors to stderr. API and connection
/// errors are printed and give a non-zero exit code.
pub async fn run(args: ClientArgs, cmd: ClientCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    run_with(args, cmd, &mut out, &mut err).await
}

/// `run` with explicit output streams (for tests).
pub async fn run_with(
    args: ClientArgs,
    cmd: ClientCommand,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let client = match Client::parse(&args.api) {
        Ok(c) => c,
        Err(e) => {
            writeln!(err, "shoal: {e}")?;
            return Ok(ExitCode::from(2));
        }
    };
    match execute(&client, args.format, cmd, out, err).await {
        Ok(code) => Ok(code),
        Err(Failure::Client(e)) => {
            writeln!(err, "shoal: {e}")?;
            Ok(ExitCode::FAILURE)
        }
        Err(Failure::Usage(msg)) => {
            writeln!(err, "shoal: {msg}")?;
            Ok(ExitCode::from(2))
        }
        // A closed stdout (e.g. `shoal watch | head`) is not an error of ours.
        Err(Failure::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(Failure::Io(e)) => Err(e.into()),
    }
}

enum Failure {
    Client(ClientError),
    Usage(String),
    Io(std::io::Error),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

fn json_out(out: &mut (dyn Write + Send), v: &impl serde::Serialize) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| Failure::Io(std::io::Error::other(e.to_string())))?;
    writeln!(out, "{s}")?;
    Ok(())
}

async fn execute(
    client: &Client,
    format: Format,
    cmd: ClientCommand,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> Result<ExitCode, Failure> {
    let json = format == Format::Json;
    match cmd {
        ClientCommand::Members {
            status,
            name,
            tag,
            why,
        } => {
            let q = MemberQuery {
                status,
                name,
                tags: tag,
            };
            if json {
                // The stable contract: the API's member objects, every field as served.
                let v = client.members_json(&q).await?;
                json_out(out, &v["members"])?;
            } else {
                let r = client.members(&q).await?;
                guard_banner(out, &r.guard)?;
                members_table(out, &r.members, why)?;
            }
        }
        ClientCommand::Explain { node } => {
            let v = client.member_history_json(&node).await?;
            if json {
                json_out(out, &v)?;
            } else {
                let r: HistoryResponse = serde_json::from_value(v.clone()).map_err(|e| {
                    Failure::Io(std::io::Error::other(format!("unexpected answer: {e}")))
                })?;
                let at: Vec<String> = v["history"]
                    .as_array()
                    .map(|h| {
                        h.iter()
                            .map(|t| t["at"].as_str().unwrap_or("").to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                explain_text(out, &r, &at)?;
            }
        }
        ClientCommand::Join { addrs } => {
            let r = client.join(addrs).await?;
            if json {
                json_out(out, &r)?;
            } else {
                for u in &r.unresolved {
                    writeln!(err, "shoal: cannot join {}: {}", u.addr, u.error)?;
                }
                if !r.announced.is_empty() {
                    let list: Vec<String> = r.announced.iter().map(|a| a.to_string()).collect();
                    writeln!(out, "announced to {}", list.join(", "))?;
                }
            }
            if r.announced.is_empty() {
                if json {
                    writeln!(
                        err,
                        "shoal: no address could be resolved; nothing was joined"
                    )?;
                }
                return Ok(ExitCode::FAILURE);
            }
        }
        ClientCommand::Leave => {
            let r = client.leave().await?;
            if json {
                json_out(out, &r)?;
            } else if r.flushed {
                writeln!(out, "left the cluster; the agent stops")?;
            } else {
                writeln!(
                    out,
                    "left the cluster (the agent did not confirm within 2 s that the leave was \
                     sent); the agent stops"
                )?;
            }
        }
        ClientCommand::Tags { set, delete } => {
            let mut map = BTreeMap::new();
            for kv in &set {
                let (k, v) = kv.split_once('=').ok_or_else(|| {
                    Failure::Usage(format!("bad --set {kv:?}: use --set KEY=VALUE"))
                })?;
                map.insert(k.to_string(), v.to_string());
            }
            let member = if map.is_empty() && delete.is_empty() {
                client.local().await?.member
            } else {
                client.set_tags(map, delete).await?.member
            };
            if json {
                json_out(out, &member.tags)?;
            } else {
                for (k, v) in &member.tags {
                    writeln!(out, "{k}={v}")?;
                }
            }
        }
        ClientCommand::Services { name, passing } => {
            let (guard, services) = match name {
                Some(n) => {
                    let r = client.service_passing(&n, passing).await?;
                    let mut m = BTreeMap::new();
                    m.insert(r.service, r.instances);
                    (r.guard, m)
                }
                None => {
                    let r = client.services_passing(passing).await?;
                    (r.guard, r.services)
                }
            };
            if json {
                json_out(out, &services)?;
            } else {
                guard_banner(out, &guard)?;
                services_table(out, &services)?;
            }
        }
        ClientCommand::Register(a) => return health::register(client, a, json, out).await,
        ClientCommand::Deregister { name } => {
            let r = client.deregister_service(&name).await?;
            if json {
                json_out(out, &r.member)?;
            } else {
                writeln!(out, "deregistered {name}")?;
            }
        }
        ClientCommand::Checks => return health::checks(client, json, out).await,
        ClientCommand::Check { id, action, note } => {
            return health::ttl(client, &id, action, note, json, out).await
        }
        ClientCommand::Report(a) => return report::report(client, a, json, out).await,
        ClientCommand::Event(a) => return events::event(client, a, json, out).await,
        ClientCommand::Events => return events::events(client, json, out).await,
        ClientCommand::Rtt(a) => return coords::rtt(client, a, json, out).await,
        ClientCommand::Query(a) => return events::query(client, a, json, out).await,
        ClientCommand::Watch => {
            let mut w = client.watch(None).await?;
            return watch_loop(&mut w, json, out, err).await;
        }
        ClientCommand::Info => {
            let r = client.local().await?;
            if json {
                json_out(out, &r)?;
            } else {
                info_table(out, &r)?;
            }
        }
        ClientCommand::Keys { action } => {
            use shoal_core::KeyOpKind;
            let (op, key) = match action {
                None | Some(KeysAction::List) => {
                    let r = client.keys().await?;
                    if json {
                        json_out(out, &r)?;
                    } else {
                        keys_table(out, &r)?;
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                Some(KeysAction::Install(k)) => (KeyOpKind::Install, k),
                Some(KeysAction::Use(k)) => (KeyOpKind::Use, k),
                Some(KeysAction::Remove(k)) => (KeyOpKind::Remove, k),
                Some(KeysAction::Members) => {
                    let r = client.member_keys().await?;
                    if json {
                        json_out(out, &r)?;
                    } else {
                        for m in &r.members {
                            writeln!(out, "{:<32} {}", m.name, m.fingerprint)?;
                        }
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                Some(KeysAction::Forget { name }) => {
                    let r = client.forget_member_key(&name).await?;
                    if json {
                        json_out(out, &r)?;
                    } else {
                        writeln!(
                            out,
                            "forgot {}'s key {} on this agent: its next signed record binds it",
                            r.name, r.forgotten.fingerprint
                        )?;
                    }
                    return Ok(ExitCode::SUCCESS);
                }
            };
            let key = key.read(&mut std::io::stdin()).map_err(Failure::Usage)?;
            let r = client.keys_change(op, &key).await?;
            if json {
                json_out(out, &r)?;
            } else {
                writeln!(
                    out,
                    "{} {}: {} of {} agents confirmed",
                    r.op.as_str(),
                    r.key_id,
                    r.confirmed.len(),
                    r.asked
                )?;
                if !r.missing.is_empty() {
                    writeln!(out, "did not confirm: {}", r.missing.join(", "))?;
                }
                for f in &r.refused {
                    writeln!(out, "refused by {}: {}", f.name, f.error)?;
                }
                keys_table(out, &r.keyring)?;
            }
            if !r.missing.is_empty() || !r.refused.is_empty() {
                return Ok(ExitCode::from(2));
            }
        }
        ClientCommand::ForceLeave { node } => {
            let r = client.force_leave(&node).await?;
            if json {
                json_out(out, &r)?;
            } else {
                let here = if r.released {
                    "released here (it was held)"
                } else {
                    "not held here"
                };
                writeln!(
                    out,
                    "force-leave {}: {here}; sent to {} active member(s)",
                    r.node, r.told
                )?;
            }
        }
        ClientCommand::Guard { action, all } => {
            let r = match (action, all) {
                (Some(GuardAction::Thaw), true) => client.guard_thaw_cluster().await?,
                (_, true) => {
                    writeln!(
                        err,
                        "shoal: --all goes with thaw only: shoal guard thaw --all"
                    )?;
                    return Ok(ExitCode::from(2));
                }
                (None, false) => client.guard().await?,
                (Some(GuardAction::Freeze), false) => client.guard_freeze().await?,
                (Some(GuardAction::Thaw), false) => client.guard_thaw().await?,
            };
            if let (Some(told), false) = (r.told, json) {
                writeln!(out, "thaw sent to {told} other agent(s)")?;
            }
            if json {
                json_out(out, &r)?;
            } else {
                guard_table(out, &r.guard)?;
                if r.guard.held > 0 {
                    // Which members are held, not just how many (the strict view:
                    // `shoal members --status alive`).
                    let q = MemberQuery {
                        status: vec!["held".into()],
                        ..Default::default()
                    };
                    let names: Vec<String> = client
                        .members(&q)
                        .await?
                        .members
                        .into_iter()
                        .map(|m| m.name)
                        .collect();
                    writeln!(out, "held members: {}", names.join(", "))?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn watch_loop(
    w: &mut Watch,
    json: bool,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> Result<ExitCode, Failure> {
    while let Some(line) = w.next().await {
        let line = line?;
        if json {
            out.write_all(line.to_line().as_bytes())?;
        } else {
            writeln!(out, "{}", describe(&line))?;
        }
        out.flush()?;
    }
    writeln!(err, "shoal: the agent closed the watch stream")?;
    Ok(ExitCode::FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// `shoal watch` (table) prints a status change with its cause, from the NDJSON line.
    #[test]
    fn a_watch_line_says_why() {
        let line = r#"{"index":7,"at_ms":9,"type":"member","change":"status","previous":"suspect",
            "member":{"name":"n2","addr":"127.0.0.1:7946","status":"down","generation":1,
            "since_ms":9,"tags":{},"services":[],"meta_version":1,
            "cause":{"reason":"suspicion_timeout","text":"suspicion timed out here"}}}"#
            .replace('\n', "");
        let w = WatchLine::parse(&line).unwrap();
        assert_eq!(
            describe(&w),
            "[7] member n2 status (suspect -> down) 127.0.0.1:7946: suspicion timed out here"
        );
    }

    /// A top-level parser shaped like the `shoal` binary's: an agent subcommand with its own
    /// `--api`, and the client commands with the global `--api`/`--format`.
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Cmd {
        Agent {
            #[arg(long)]
            api: Option<String>,
        },
        #[command(flatten)]
        Client(ClientCommand),
    }

    #[test]
    fn contract_parses() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "shoal",
            "members",
            "--status",
            "alive",
            "--name",
            "web.*",
            "--tag",
            "role=db",
            "--format",
            "json",
            "--api",
            "unix:/tmp/x.sock",
        ])
        .unwrap();
        assert_eq!(c.client.format, Format::Json);
        assert_eq!(c.client.api, "unix:/tmp/x.sock");
        match c.cmd {
            Cmd::Client(ClientCommand::Members {
                status,
                name,
                tag,
                why,
            }) => {
                assert_eq!(status, vec!["alive"]);
                assert_eq!(name.as_deref(), Some("web.*"));
                assert_eq!(tag, vec!["role=db"]);
                assert!(!why);
            }
            other => panic!("parsed as {other:?}"),
        }
        let c = Cli::try_parse_from(["shoal", "agent", "--api", "unix:/a"]).unwrap();
        assert!(matches!(c.cmd, Cmd::Agent { api: Some(ref a) } if a == "unix:/a"));
        let c = Cli::try_parse_from(["shoal", "members", "--why"]).unwrap();
        assert!(matches!(
            c.cmd,
            Cmd::Client(ClientCommand::Members { why: true, .. })
        ));
        let c = Cli::try_parse_from(["shoal", "explain", "web-3"]).unwrap();
        assert!(
            matches!(c.cmd, Cmd::Client(ClientCommand::Explain { ref node }) if node == "web-3")
        );
        for argv in [
            vec!["shoal", "join", "10.0.0.1:7946", "h:1"],
            vec!["shoal", "leave"],
            vec![
                "shoal", "tags", "--set", "a=b", "--set", "c=d", "--delete", "e",
            ],
            vec!["shoal", "services"],
            vec!["shoal", "services", "web"],
            vec!["shoal", "watch", "--format", "json"],
            vec!["shoal", "info"],
            vec!["shoal", "guard"],
            vec!["shoal", "guard", "freeze"],
            vec!["shoal", "guard", "thaw"],
        ] {
            Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
        assert!(Cli::try_parse_from(["shoal", "join"]).is_err());
        assert!(Cli::try_parse_from(["shoal", "guard", "melt"]).is_err());
    }
}
