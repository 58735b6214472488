//! `shoal rtt A [B]`: the estimated round trip between two members from network coordinates
//! (Serf's `serf rtt`; one name: from this agent), through the local API (`/v1/rtt/...`).
//!
//! A child module of `cli` (it shares its output helpers). Talks to the agent only through
//! `crate::client`; the agent computes the estimate (docs/coordinates.md).

use super::{json_out, Failure};
use crate::client::Client;
use std::io::Write;
use std::process::ExitCode;

/// `shoal rtt A [B]`.
#[derive(Clone, Debug, clap::Args)]
pub struct RttArgs {
    /// A member (from this agent when it is the only name given).
    pub a: String,
    /// A second member: the estimate between A and B.
    pub b: Option<String>,
}

pub(super) async fn rtt(
    client: &Client,
    a: RttArgs,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, Failure> {
    let r = client.rtt(&a.a, a.b.as_deref()).await?;
    if json {
        json_out(out, &r)?;
    } else {
        writeln!(
            out,
            "Estimated {} <-> {} rtt: {:.3} ms ({})",
            r.from,
            r.to,
            r.rtt_ms,
            if r.source == "measured" {
                "measured by this agent's probes"
            } else {
                "using LAN coordinates"
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
