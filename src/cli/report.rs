//! `shoal report SERVICE NODE [--success N] [--error N] [--timeout N]`: a script's report of
//! the outcomes of its calls to an instance (`POST /v1/reports`), for outlier ejection.
//!
//! A child module of `cli` (it shares its output helpers). Talks to the agent only through
//! `crate::client`; the agent validates the report and decides (docs/outliers.md).

use super::{json_out, table, Failure};
use crate::api::reports::Report;
use crate::client::Client;
use std::io::Write;
use std::process::ExitCode;

/// `shoal report SERVICE NODE --error N --success N --timeout N`.
#[derive(Clone, Debug, clap::Args)]
pub struct ReportArgs {
    /// The service called.
    pub service: String,
    /// The node whose instance was called.
    pub node: String,
    /// The instance id on that node (needed when it runs several instances of the service).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Calls that succeeded.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub success: u64,
    /// Calls that failed (a connection error, a 5xx).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub error: u64,
    /// Calls that timed out.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub timeout: u64,
}

pub(super) async fn report(
    client: &Client,
    a: ReportArgs,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, Failure> {
    if a.success == 0 && a.error == 0 && a.timeout == 0 {
        return Err(Failure::Usage(
            "nothing to report: give --success, --error or --timeout with a count".into(),
        ));
    }
    let r = client
        .report(vec![Report {
            service: a.service,
            node: a.node,
            id: a.id,
            success: a.success,
            error: a.error,
            timeout: a.timeout,
        }])
        .await?;
    if json {
        json_out(out, &r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![vec![
        "SERVICE".to_string(),
        "NODE".into(),
        "SUCCESS".into(),
        "ERROR".into(),
        "TIMEOUT".into(),
        "EJECTED".into(),
    ]];
    for i in &r.instances {
        rows.push(vec![
            i.service.clone(),
            i.node.clone(),
            i.window.success.to_string(),
            i.window.error.to_string(),
            i.window.timeout.to_string(),
            match &i.ejected {
                Some(e) => format!("yes: {}", e.reason),
                None => "no".into(),
            },
        ]);
    }
    table(out, &rows)?;
    Ok(ExitCode::SUCCESS)
}
