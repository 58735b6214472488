//! What the client commands print for people: the one-line description of a watch line and
//! the tables of members, services, the guard, the node itself and the keyring.
//!
//! Owns the human text formats (the `--format json` shapes are the API's types, printed as
//! they come). Must not talk to the agent: it renders what `cli` fetched.

use super::*;
use shoal_core::{EventKind, GuardReport, GuardState, Instance, MemberView};
use std::collections::BTreeMap;
use std::io::Write;

/// One human line for a watch line.
pub fn describe(line: &WatchLine) -> String {
    match line {
        WatchLine::Snapshot(s) => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for m in &s.members {
                *counts.entry(m.status.as_str()).or_default() += 1;
            }
            let c: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
            format!(
                "[{}] snapshot: {} members ({}), guard {}",
                s.index,
                s.members.len(),
                c.join(", "),
                s.guard.state.as_str()
            )
        }
        WatchLine::Event(e) => {
            let what = match &e.kind {
                EventKind::Member {
                    change,
                    previous,
                    member,
                } => {
                    let change = serde_json::to_value(change)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    match previous {
                        Some(p) if *p != member.status => format!(
                            "member {} {} ({} -> {}) {}",
                            member.name, change, p, member.status, member.addr
                        ),
                        _ => format!(
                            "member {} {} ({}) {}",
                            member.name, change, member.status, member.addr
                        ),
                    }
                }
                EventKind::Guard(t) => format!(
                    "guard {} -> {}: {} ({} held)",
                    t.from.as_str(),
                    t.to.as_str(),
                    t.report.reason,
                    t.report.held
                ),
                EventKind::Health(t) => format!(
                    "health guard of {} {} -> {}: {} ({} held)",
                    t.service,
                    t.from.as_str(),
                    t.to.as_str(),
                    t.report.reason,
                    t.report.held
                ),
                EventKind::Local(l) => {
                    let v = serde_json::to_value(l).unwrap_or_default();
                    let what = v.get("what").and_then(|w| w.as_str()).unwrap_or("?");
                    match v.get("generation") {
                        Some(g) => format!("this node: {what} (generation {g})"),
                        None => format!("this node: {what}"),
                    }
                }
            };
            format!("[{}] {what}", e.index)
        }
    }
}

pub(super) fn keys_table(
    out: &mut (dyn Write + Send),
    k: &crate::api::keys::KeysResponse,
) -> std::io::Result<()> {
    if !k.encrypted {
        return writeln!(
            out,
            "INSECURE: this agent runs without encryption (--insecure)"
        );
    }
    for id in &k.keys {
        let primary = if Some(id) == k.primary.as_ref() {
            "  primary"
        } else {
            ""
        };
        writeln!(out, "{id}{primary}")?;
    }
    if k.plaintext != shoal_core::trust::Plaintext::Refuse {
        writeln!(
            out,
            "plaintext: {:?} (transition to encryption in progress)",
            k.plaintext
        )?;
    }
    Ok(())
}

pub(super) fn guard_banner(out: &mut (dyn Write + Send), g: &GuardReport) -> std::io::Result<()> {
    if g.state != GuardState::Normal {
        writeln!(
            out,
            "GUARD {}: {} ({} held of baseline {}{})",
            g.state.as_str().to_uppercase(),
            g.reason,
            g.held,
            g.baseline,
            if g.escalated { ", escalated" } else { "" }
        )?;
    }
    Ok(())
}

pub(super) fn tags_text(tags: &BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Prints rows with columns padded to their widest cell (the last column unpadded).
pub(super) fn table(out: &mut (dyn Write + Send), rows: &[Vec<String>]) -> std::io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                line.push_str(c);
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

pub(super) fn members_table(
    out: &mut (dyn Write + Send),
    members: &[MemberView],
) -> std::io::Result<()> {
    let mut rows = vec![vec![
        "NAME".to_string(),
        "ADDR".into(),
        "STATUS".into(),
        "TAGS".into(),
        "SERVICES".into(),
    ]];
    for m in members {
        let services: Vec<String> = m
            .services
            .iter()
            .map(|s| format!("{}:{}", s.name, s.port))
            .collect();
        // Why a member is out of the view, when it is gray evidence or damping.
        let status = match (&m.damping, &m.gray) {
            (Some(d), _) if m.status == shoal_core::ServedStatus::Damped => {
                format!("damped (penalty {})", d.penalty)
            }
            (_, Some(cause)) => format!("{} ({cause})", m.status),
            _ => m.status.to_string(),
        };
        rows.push(vec![
            m.name.clone(),
            m.addr.to_string(),
            status,
            tags_text(&m.tags),
            services.join(","),
        ]);
    }
    table(out, &rows)
}

pub(super) fn services_table(
    out: &mut (dyn Write + Send),
    services: &BTreeMap<String, Vec<Instance>>,
) -> std::io::Result<()> {
    let mut rows = vec![vec![
        "SERVICE".to_string(),
        "NODE".into(),
        "ADDR".into(),
        "STATUS".into(),
        "HEALTH".into(),
        "TAGS".into(),
        "OUTPUT".into(),
    ]];
    for (name, instances) in services {
        for i in instances {
            rows.push(vec![
                name.clone(),
                i.node.clone(),
                i.addr.to_string(),
                i.status.to_string(),
                health::health_word(i),
                tags_text(&i.tags),
                i.health_output.clone(),
            ]);
        }
    }
    let held: Vec<&String> = services
        .values()
        .flatten()
        .filter_map(|i| i.health_held.as_ref())
        .collect();
    if let Some(why) = held.first() {
        writeln!(out, "HEALTH GUARD: {why}")?;
    }
    table(out, &rows)
}

pub(super) fn guard_table(out: &mut (dyn Write + Send), g: &GuardReport) -> std::io::Result<()> {
    let mode = serde_json::to_value(g.mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    table(
        out,
        &[
            vec!["state:".into(), g.state.as_str().to_string()],
            vec!["reason:".into(), g.reason.clone()],
            vec!["held:".into(), g.held.to_string()],
            vec!["baseline:".into(), g.baseline.to_string()],
            vec!["mode:".into(), mode],
            vec![
                "escalated:".into(),
                if g.escalated { "yes" } else { "no" }.into(),
            ],
            vec!["since:".into(), format!("{} ms (agent clock)", g.since_ms)],
        ],
    )
}

pub(super) fn info_table(out: &mut (dyn Write + Send), r: &SelfResponse) -> std::io::Result<()> {
    let m = &r.member;
    let s = &r.stats;
    let c = &s.counters;
    let services: Vec<String> = m
        .services
        .iter()
        .map(|x| format!("{}:{}", x.name, x.port))
        .collect();
    let counts: Vec<String> = s.members.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let drops: Vec<String> = c
        .drops()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let rows = vec![
        vec!["name:".into(), m.name.clone()],
        vec!["addr:".into(), m.addr.to_string()],
        vec!["status:".into(), m.status.to_string()],
        vec!["generation:".into(), m.generation.to_string()],
        vec!["tags:".into(), tags_text(&m.tags)],
        vec!["services:".into(), services.join(",")],
        vec![
            "guard:".into(),
            format!(
                "{} ({}; {} held, baseline {})",
                r.guard.state.as_str(),
                r.guard.reason,
                r.guard.held,
                r.guard.baseline
            ),
        ],
        vec!["members:".into(), counts.join(", ")],
        vec![
            "active peers:".into(),
            format!(
                "{}{}",
                s.active_peers,
                if s.idle { " (idle: re-announcing)" } else { "" }
            ),
        ],
        vec!["index:".into(), r.index.to_string()],
        vec![
            "encryption:".into(),
            if s.trust.encrypted {
                match s.trust.plaintext {
                    shoal_core::trust::Plaintext::Refuse => "on".to_string(),
                    p => format!("on, plaintext {p:?} (transition)"),
                }
            } else {
                "OFF (--insecure): anyone who can send a datagram can speak for any node".into()
            },
        ],
        vec![
            "received:".into(),
            format!("{} datagrams, {} bytes", c.rx_datagrams, c.rx_bytes),
        ],
        vec![
            "sent:".into(),
            format!("{} datagrams, {} bytes", c.tx_datagrams, c.tx_bytes),
        ],
        vec![
            "dropped:".into(),
            if drops.is_empty() {
                "0".to_string()
            } else {
                format!("{} ({})", s.dropped_total, drops.join(", "))
            },
        ],
        vec![
            "backlog:".into(),
            format!(
                "{} updates, {} metadata broadcasts",
                s.backlog.updates, s.backlog.broadcasts
            ),
        ],
    ];
    table(out, &rows)
}
