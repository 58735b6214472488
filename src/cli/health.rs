//! The health commands of the CLI: `shoal register` (a service with its checks), `shoal
//! checks` (this agent's checks) and `shoal check ID pass|warn|fail` (a ttl update), and the
//! health column of `shoal services`.
//!
//! A child module of `cli` (it shares its output helpers). Talks to the agent only through
//! `crate::client`; the check shapes are the API's (`CheckSpec`), validated by the agent.

use super::{json_out, table, Failure};
use crate::agent::checks::CheckSpec;
use crate::api::types::ServiceRequest;
use crate::client::Client;
use shoal_core::Instance;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TtlAction {
    /// The app is healthy.
    Pass,
    /// The app is degraded (still in DNS answers, not in `?passing`).
    Warn,
    /// The app is failing.
    Fail,
}

/// `shoal register NAME:PORT [--tag k=v]... [--check JSON]... [--http URL | --tcp IP:PORT |
/// --ttl DURATION] [--interval D] [--timeout D]`.
#[derive(Clone, Debug, clap::Args)]
pub struct RegisterArgs {
    /// The service: name:port (for example web:8080).
    #[arg(value_name = "NAME:PORT")]
    pub service: String,
    /// The instance id, unique on this node (default: the name); give one per instance to
    /// run several instances of a service on this node.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// A tag of the service; repeatable.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// A check in the API's JSON shape, e.g. '{"exec":["/usr/bin/pg_isready"],"interval":"5s"}';
    /// repeatable.
    #[arg(long = "check", value_name = "JSON")]
    pub checks: Vec<String>,
    /// Shorthand: an http check of this URL.
    #[arg(long, value_name = "URL")]
    pub http: Option<String>,
    /// Shorthand: a tcp check of this address.
    #[arg(long, value_name = "IP:PORT")]
    pub tcp: Option<String>,
    /// Shorthand: a ttl check (the app reports with `shoal check ID pass`).
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Interval of the shorthand check (default 10s).
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<String>,
    /// Timeout of the shorthand check (default 5s).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

/// The health column: the owner's health, `critical (held)` when the health guard holds it.
pub fn health_word(i: &Instance) -> String {
    match &i.health_held {
        Some(_) => format!("{} (held)", i.health()),
        None => i.health().to_string(),
    }
}

fn request(a: RegisterArgs) -> Result<ServiceRequest, Failure> {
    let bad = || {
        Failure::Usage(format!(
            "bad service {:?}: write NAME:PORT (for example web:8080)",
            a.service
        ))
    };
    let (name, port) = a.service.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let mut tags = BTreeMap::new();
    for kv in &a.tags {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("bad --tag {kv:?}: use --tag KEY=VALUE")))?;
        tags.insert(k.to_string(), v.to_string());
    }
    let mut checks = Vec::new();
    for j in &a.checks {
        let c: CheckSpec = serde_json::from_str(j).map_err(|e| {
            Failure::Usage(format!(
                "bad --check {j:?}: {e}; write the API's JSON, e.g. \
                 '{{\"http\":\"http://127.0.0.1:8080/health\",\"interval\":\"5s\"}}'"
            ))
        })?;
        checks.push(c);
    }
    let short = [a.http.is_some(), a.tcp.is_some(), a.ttl.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if short > 1 {
        return Err(Failure::Usage(
            "give at most one of --http, --tcp and --ttl (more checks: --check JSON)".into(),
        ));
    }
    if short == 1 {
        checks.push(CheckSpec {
            http: a.http,
            tcp: a.tcp,
            ttl: a.ttl,
            interval: a.interval,
            timeout: a.timeout,
            ..CheckSpec::default()
        });
    } else if a.interval.is_some() || a.timeout.is_some() {
        return Err(Failure::Usage(
            "--interval and --timeout go with --http or --tcp".into(),
        ));
    }
    Ok(ServiceRequest {
        name: name.to_string(),
        id: a.id.clone(),
        port,
        tags,
        health: None,
        checks,
    })
}

pub(super) async fn register(
    client: &Client,
    a: RegisterArgs,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, Failure> {
    let req = request(a)?;
    let r = client.register_service(&req).await?;
    if json {
        json_out(out, &r.member)?;
    } else {
        writeln!(
            out,
            "registered {}:{} with {} check(s)",
            req.name,
            req.port,
            req.checks.len()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn checks(
    client: &Client,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, Failure> {
    let r = client.checks().await?;
    if json {
        json_out(out, &r.checks)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![vec![
        "CHECK".to_string(),
        "SERVICE".into(),
        "KIND".into(),
        "TARGET".into(),
        "STATUS".into(),
        "OUTPUT".into(),
    ]];
    for c in &r.checks {
        rows.push(vec![
            c.id.clone(),
            c.service.clone(),
            c.kind.clone(),
            c.target.clone(),
            c.status.to_string(),
            shoal_core::output_line(&c.output),
        ]);
    }
    table(out, &rows)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn ttl(
    client: &Client,
    id: &str,
    action: TtlAction,
    note: Option<String>,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, Failure> {
    let word = match action {
        TtlAction::Pass => "pass",
        TtlAction::Warn => "warn",
        TtlAction::Fail => "fail",
    };
    let r = client.check_update(id, word, note.as_deref()).await?;
    if json {
        json_out(out, &r.check)?;
    } else {
        writeln!(out, "{}: {}", r.check.id, r.check.status)?;
    }
    Ok(ExitCode::SUCCESS)
}
