//! What the client commands print for people: the one-line description of a watch line and
//! the tables of members, services, the guard, the node itself and the keyring.
//!
//! Owns the human text formats (the `--format json` shapes are the API's types, printed as
//! they come). Must not talk to the agent: it renders what `cli` fetched.

use super::health;
use crate::api::types::{HistoryResponse, SelfResponse, StatsView, WatchLine};
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
                            "member {} {} ({} -> {}) {}{}",
                            member.name,
                            change,
                            p,
                            member.status,
                            member.addr,
                            member
                                .cause
                                .as_ref()
                                .map(|c| format!(": {}", c.text))
                                .unwrap_or_default()
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
                EventKind::UserEvent(e) => format!(
                    "user event {} from {} (ltime {}): {}",
                    e.name, e.origin, e.ltime, e.payload
                ),
                EventKind::Query(q) => format!(
                    "query {} from {} (id {}): {}",
                    q.name, q.origin, q.id, q.payload
                ),
                EventKind::Outlier(t) => format!(
                    "instance {} of {} {}: {}",
                    t.node,
                    t.service,
                    t.action.as_str(),
                    t.reason
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
    if !k.retired.is_empty() {
        writeln!(
            out,
            "retired (never accepted again): {}",
            k.retired.join(", ")
        )?;
    }
    if k.plaintext != shoal_core::Plaintext::Refuse {
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

/// `why`: a last column with the cause of each member's status.
pub(super) fn members_table(
    out: &mut (dyn Write + Send),
    members: &[MemberView],
    why: bool,
) -> std::io::Result<()> {
    let mut rows = vec![vec![
        "NAME".to_string(),
        "ADDR".into(),
        "STATUS".into(),
        "TAGS".into(),
        "SERVICES".into(),
    ]];
    if why {
        rows[0].push("WHY".into());
    }
    for m in members {
        let services: Vec<String> = m.services.iter().map(instance_text).collect();
        // Why a member is out of the view, when it is gray evidence or damping.
        let status = match (&m.damping, &m.gray) {
            (Some(d), _) if m.status == shoal_core::ServedStatus::Damped => {
                format!("damped (penalty {})", d.penalty)
            }
            (_, Some(cause)) => format!("{} ({cause})", m.status),
            _ => m.status.to_string(),
        };
        let mut row = vec![
            m.name.clone(),
            m.addr.to_string(),
            status,
            tags_text(&m.tags),
            services.join(","),
        ];
        if why {
            row.push(m.cause.as_ref().map(|c| c.text.clone()).unwrap_or_default());
        }
        rows.push(row);
    }
    table(out, &rows)
}

/// `shoal explain NAME`: the member now, then its transitions (oldest first) with the
/// wall-clock time `at` the agent gave each (agent-clock ms when absent).
pub(super) fn explain_text(
    out: &mut (dyn Write + Send),
    r: &HistoryResponse,
    at: &[String],
) -> std::io::Result<()> {
    let m = &r.member;
    writeln!(
        out,
        "{} {} is {} (generation {})",
        m.name, m.addr, m.status, m.generation
    )?;
    match &m.cause {
        Some(c) => writeln!(out, "why: {}", c.text)?,
        None => writeln!(out, "why: no transition of it seen by this agent")?,
    }
    if r.history.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let mut rows = vec![vec![
        "AT".to_string(),
        "FROM".into(),
        "TO".into(),
        "REASON".into(),
        "EVIDENCE".into(),
    ]];
    for (i, t) in r.history.iter().enumerate() {
        let when = match at.get(i) {
            Some(a) if !a.is_empty() => a.clone(),
            _ => format!("{} ms (agent clock)", t.at_ms),
        };
        rows.push(vec![
            when,
            t.from.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            t.to.to_string(),
            t.cause.reason.to_string(),
            t.cause.text.clone(),
        ]);
    }
    table(out, &rows)
}

/// `name:port`, and `[id]` when the instance's id is not the service's name.
fn instance_text(s: &shoal_core::ServiceView) -> String {
    if s.id.is_empty() || s.id == s.name {
        format!("{}:{}", s.name, s.port)
    } else {
        format!("{}:{}[{}]", s.name, s.port, s.id)
    }
}

pub(super) fn services_table(
    out: &mut (dyn Write + Send),
    services: &BTreeMap<String, Vec<Instance>>,
) -> std::io::Result<()> {
    let mut rows = vec![vec![
        "SERVICE".to_string(),
        "ID".into(),
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
                i.id.clone(),
                i.node.clone(),
                i.addr.to_string(),
                match &i.ejected {
                    Some(_) => format!("{} (ejected)", i.status),
                    None => i.status.to_string(),
                },
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
    for (name, instances) in services {
        for i in instances {
            if let Some(e) = &i.ejected {
                writeln!(out, "EJECTED {} of {name}: {}", i.node, e.reason)?;
            }
        }
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

/// The senders whose datagrams were refused lately, with why and how many (at most 5).
fn recent_drops_text(s: &StatsView) -> String {
    if s.recent_drops.is_empty() {
        return "none".into();
    }
    let mut parts: Vec<String> = s
        .recent_drops
        .iter()
        .take(5)
        .map(|d| {
            let mut p = format!("{} {} x{}", d.from, d.reason, d.count);
            if !d.detail.is_empty() {
                p.push_str(&format!(" ({})", d.detail));
            }
            p
        })
        .collect();
    if s.recent_drops.len() > 5 {
        parts.push(format!(
            "{} more (shoal info --format json)",
            s.recent_drops.len() - 5
        ));
    }
    parts.join("; ")
}

/// This agent's protocol range and the cluster's members by range (docs/upgrades.md):
/// `1..2 (members: 1 x2, 1..2 x3)`, with the messages of a later release it ignored.
fn protocol_text(own: Option<shoal_core::ProtocolRange>, s: &StatsView) -> String {
    let own = own.unwrap_or(shoal_core::PROTOCOL);
    let members: Vec<String> = s
        .protocols
        .iter()
        .map(|(p, n)| format!("{p} x{n}"))
        .collect();
    let mut text = format!("{own} (members: {})", members.join(", "));
    let apart: usize = s
        .protocols
        .iter()
        .filter(|(p, _)| {
            p.parse::<shoal_core::ProtocolRange>()
                .is_ok_and(|p| !p.overlaps(&own))
        })
        .map(|(_, n)| n)
        .sum();
    if apart > 0 {
        text.push_str(&format!(
            "; {apart} members speak no protocol of this agent: upgrade one release at a time"
        ));
    }
    if s.counters.unknown_kinds > 0 {
        text.push_str(&format!(
            "; {} messages of a later release ignored",
            s.counters.unknown_kinds
        ));
    }
    text
}

pub(super) fn info_table(out: &mut (dyn Write + Send), r: &SelfResponse) -> std::io::Result<()> {
    let m = &r.member;
    let s = &r.stats;
    let c = &s.counters;
    let services: Vec<String> = m.services.iter().map(instance_text).collect();
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
        vec!["protocol:".into(), protocol_text(m.protocol, s)],
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
                    shoal_core::Plaintext::Refuse => "on".to_string(),
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
        vec!["recent drops:".into(), recent_drops_text(s)],
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
