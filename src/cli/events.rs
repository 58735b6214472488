//! `shoal event NAME [PAYLOAD|-]`, `shoal events` and `shoal query NAME [PAYLOAD|-]
//! [--node N] [--tag k=v] [--service S] [--timeout D]`: Serf's user events and queries
//! through the local API (`/v1/event/{name}`, `/v1/events`, `/v1/query/{name}`).
//!
//! A child module of `cli` (it shares its output helpers). Talks to the agent only through
//! `crate::client`; the agent checks names and bounds and decides (docs/events.md).

use super::{json_out, table, Failure};
use crate::client::{Client, QueryArgs};
use std::io::{Read, Write};
use std::process::ExitCode;

/// Most bytes read from stdin for a payload (the agent refuses past its own bound).
const STDIN_MAX: u64 = 64 * 1024;

/// `shoal event NAME [PAYLOAD|-] [--no-coalesce]`.
#[derive(Clone, Debug, clap::Args)]
pub struct EventArgs {
    /// The event's name (letters, digits, '-', '_', '.', ':').
    pub name: String,
    /// The payload (`-`: read it from stdin); at most `event_payload_max` bytes (512).
    pub payload: Option<String>,
    /// Deliver every event of this name, not only the newest of a burst.
    #[arg(long)]
    pub no_coalesce: bool,
}

/// `shoal query NAME [PAYLOAD|-] [--node N]... [--tag k=v]... [--service S] [--timeout D]`.
#[derive(Clone, Debug, clap::Args)]
pub struct QueryCmdArgs {
    /// The query's name (a member's query handler for it answers).
    pub name: String,
    /// The payload (`-`: read it from stdin).
    pub payload: Option<String>,
    /// Only this member (repeatable).
    #[arg(long, value_name = "N")]
    pub node: Vec<String>,
    /// Only members with this tag (repeatable, all must match).
    #[arg(long, value_name = "key=value")]
    pub tag: Vec<String>,
    /// Only members offering this service.
    #[arg(long, value_name = "S")]
    pub service: Option<String>,
    /// How long to collect answers [default: gossip interval x 16 x ceil(log10(N+1))].
    #[arg(long, value_name = "D")]
    pub timeout: Option<String>,
}

fn payload(p: Option<String>) -> Result<Vec<u8>, Failure> {
    match p.as_deref() {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .take(STDIN_MAX)
                .read_to_end(&mut buf)
                .map_err(Failure::Io)?;
            Ok(buf)
        }
        Some(s) => Ok(s.as_bytes().to_vec()),
    }
}

pub(super) async fn event(
    client: &Client,
    a: EventArgs,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, Failure> {
    let r = client
        .fire_event(&a.name, payload(a.payload)?, !a.no_coalesce)
        .await?;
    if json {
        json_out(out, &r)?;
    } else {
        writeln!(
            out,
            "event {} fired (id {}, ltime {})",
            r.event.name, r.event.id, r.event.ltime
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn events(
    client: &Client,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, Failure> {
    let r = client.events().await?;
    if json {
        json_out(out, &r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![vec![
        "LTIME".to_string(),
        "NAME".into(),
        "ORIGIN".into(),
        "PAYLOAD".into(),
    ]];
    for e in &r.events {
        rows.push(vec![
            e.event.ltime.to_string(),
            e.event.name.clone(),
            e.event.origin.clone(),
            e.event.payload.clone(),
        ]);
    }
    table(out, &rows)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn query(
    client: &Client,
    a: QueryCmdArgs,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, Failure> {
    let args = QueryArgs {
        nodes: a.node,
        tags: a.tag,
        service: a.service,
        timeout: a.timeout,
    };
    let r = client.query(&a.name, payload(a.payload)?, &args).await?;
    if json {
        json_out(out, &r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let q = &r.query;
    for ans in &q.answers {
        writeln!(out, "{}: {}", ans.from, ans.payload.trim_end())?;
    }
    let mut line = format!(
        "query {}: {} expected, {} acks, {} answers",
        q.name,
        q.expected,
        q.acks,
        q.answers.len()
    );
    if q.cut_off > 0 {
        line += &format!(", {} cut off (not reached)", q.cut_off);
    }
    if q.pending > 0 {
        line += &format!(", {} answers still pending", q.pending);
    }
    if q.timed_out {
        line += &format!(" (timed out after {} ms)", q.timeout_ms);
    }
    writeln!(out, "{line}")?;
    Ok(ExitCode::SUCCESS)
}
