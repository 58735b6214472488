//! `/metrics`: the node's figures (the encoding is `api::exposition`'s, OpenMetrics text
//! through `prometheus-client`).
//!
//! Owns the metric names, their help text and types. Reads a consistent snapshot taken under
//! the node lock by the caller; must not lock, decide or change anything itself.

use crate::api::exposition::Exposition;
use shoal_core::{GuardReport, GuardState, ServedStatus, Stats};
use std::collections::BTreeMap;

/// What the exposition is built from (taken under one lock of the node).
pub struct MetricsInput {
    pub stats: Stats,
    pub guard: GuardReport,
    pub members: BTreeMap<ServedStatus, usize>,
    pub active_peers: usize,
    pub idle: bool,
    pub index: u64,
    pub backlog: (usize, usize),
    pub trust: crate::api::types::TrustView,
    /// The HTTP listeners' bounds at work (`api::limits`).
    pub api: crate::api::limits::ApiLoadView,
}

pub const ALL_STATUSES: [ServedStatus; 7] = [
    ServedStatus::Alive,
    ServedStatus::Suspect,
    ServedStatus::Held,
    ServedStatus::Left,
    ServedStatus::Down,
    ServedStatus::Restarting,
    ServedStatus::Damped,
];

const GUARD_STATES: [GuardState; 4] = [
    GuardState::Normal,
    GuardState::Frozen,
    GuardState::Isolated,
    GuardState::Warming,
];

/// Adds the node's families to the exposition.
pub fn render(out: &mut Exposition, m: &MetricsInput) {
    out.gauges(
        "shoal_members",
        "Members in the served view, by served status.",
        "status",
        ALL_STATUSES.map(|st| (st.as_str(), m.members.get(&st).copied().unwrap_or(0) as u64)),
    );
    let s = &m.stats;
    for (name, help, v) in [
        (
            "shoal_datagrams_received_total",
            "Datagrams received on the gossip socket, valid or not.",
            s.rx_datagrams,
        ),
        (
            "shoal_datagrams_sent_total",
            "Datagrams sent on the gossip socket.",
            s.tx_datagrams,
        ),
        (
            "shoal_bytes_received_total",
            "Bytes received on the gossip socket.",
            s.rx_bytes,
        ),
        (
            "shoal_bytes_sent_total",
            "Bytes sent on the gossip socket.",
            s.tx_bytes,
        ),
    ] {
        out.counter(name, help, v);
    }
    out.counters(
        "shoal_datagrams_dropped_total",
        "Received datagrams dropped, by reason.",
        "reason",
        s.drops(),
    );
    for (name, help, v) in [
        (
            "shoal_meta_records_received_total",
            "Metadata records received from peers.",
            s.meta_records_received,
        ),
        (
            "shoal_anti_entropy_rounds_total",
            "Metadata anti-entropy exchanges started by this node.",
            s.anti_entropy_rounds,
        ),
        (
            "shoal_member_sync_rounds_total",
            "Membership anti-entropy rounds (name filter sent) started by this node.",
            s.member_sync_rounds,
        ),
        (
            "shoal_member_intros_sent_total",
            "Members introduced to peers that lacked them.",
            s.member_intros_sent,
        ),
        (
            "shoal_member_intros_applied_total",
            "Members learned through membership anti-entropy.",
            s.member_intros_applied,
        ),
        (
            "shoal_members_refused_total",
            "Unknown members refused because the member table was full (max_members).",
            s.members_refused,
        ),
        (
            "shoal_records_refused_total",
            "Records of unknown members refused because the record store was full (max_members).",
            s.records_refused,
        ),
        (
            "shoal_member_pulls_total",
            "Membership filters sent to pull the member list in bulk after joining.",
            s.member_pulls,
        ),
        (
            "shoal_member_pulls_unanswered_total",
            "Membership filters left unanswered: this node's answer budget for the second was spent.",
            s.member_pulls_unanswered,
        ),
        (
            "shoal_tx_oversized_total",
            "Messages not sent because they did not fit a datagram (a bug if ever above 0).",
            s.tx_oversized,
        ),
        (
            "shoal_discovery_announces_total",
            "Announces to nodes known from their metadata but missed by SWIM.",
            s.discovery_announces,
        ),
        (
            "shoal_records_refuted_total",
            "Records about this agent it did not issue (a forged leave), refuted by its own.",
            s.records_refuted,
        ),
        (
            "shoal_discovery_announces_limited_total",
            "Discovery announces not sent: their address had its budget (many records name it).",
            s.discovery_announces_limited,
        ),
        (
            "shoal_want_answers_limited_total",
            "Requests for records left unanswered: their sender had its budget for the second.",
            s.want_answers_limited,
        ),
        (
            "shoal_meta_batch_requests_total",
            "Batched requests for missing metadata records sent to random peers.",
            s.meta_batch_requests,
        ),
        (
            "shoal_meta_direct_requests_total",
            "Requests for a missing metadata record sent to the member itself.",
            s.meta_direct_requests,
        ),
        (
            "shoal_reach_checks_total",
            "Reach checks the guard ran (pings to the baseline on suspicion or silence).",
            s.reach_checks,
        ),
        (
            "shoal_reach_pings_total",
            "Reach pings sent (every round of every check, and heal pings).",
            s.reach_pings,
        ),
        (
            "shoal_refutes_total",
            "Times this node refuted a suspicion of itself.",
            s.refutes,
        ),
        (
            "shoal_coordinate_updates_total",
            "Updates of this agent's network coordinate (timed probes).",
            s.coordinate_updates,
        ),
        (
            "shoal_coordinates_sent_total",
            "Network coordinates sent to members that probed this agent.",
            s.coordinates_sent,
        ),
        (
            "shoal_coordinates_refused_total",
            "Network coordinates refused from peers: not finite or out of bounds.",
            s.coordinates_refused,
        ),
        (
            "shoal_coordinates_unsolicited_total",
            "Network coordinates ignored: their sender was not probed recently.",
            s.coordinates_unsolicited,
        ),
        (
            "shoal_unknown_kinds_total",
            "Messages and broadcast items of a kind a later release added, ignored.",
            s.unknown_kinds,
        ),
        (
            "shoal_operator_thaws_ignored_total",
            "Cluster-wide thaws not taken: within 10 s of the last one, or naming this node.",
            s.operator_thaws_ignored,
        ),
        (
            "shoal_gray_removals_total",
            "Members this node served down because several observers could not reach them.",
            s.gray_removals,
        ),
        (
            "shoal_reach_reports_sent_total",
            "Datagrams of reach reports (gray-failure evidence) sent.",
            s.reach_reports_sent,
        ),
        (
            "shoal_rejoin_attempts_total",
            "Re-announce rounds while the node had no active peer.",
            s.rejoin_attempts,
        ),
    ] {
        out.counter(name, help, v);
    }
    render_fleet(out, s);
    out.gauges(
        "shoal_guard_state",
        "Guard state: 1 for the current state, 0 for the others.",
        "state",
        GUARD_STATES.map(|st| (st.as_str(), u64::from(m.guard.state == st))),
    );
    for (name, help, v) in [
        (
            "shoal_guard_held_members",
            "Members SWIM declared down that the guard still serves as held.",
            m.guard.held as u64,
        ),
        (
            "shoal_guard_baseline_members",
            "Size of the baseline the guard compares failures against.",
            m.guard.baseline as u64,
        ),
        (
            "shoal_guard_escalated",
            "1 when the guard has been frozen or isolated for longer than max_freeze.",
            u64::from(m.guard.escalated),
        ),
        (
            "shoal_active_peers",
            "Peers SWIM currently considers active (not counting this node).",
            m.active_peers as u64,
        ),
        (
            "shoal_idle",
            "1 while the node has no active peer and keeps re-announcing.",
            u64::from(m.idle),
        ),
    ] {
        out.gauge(name, help, v);
    }
    // A gauge since the OpenMetrics exposition: a counter's samples must end in `_total`,
    // and the sample's name is a contract.
    out.gauge(
        "shoal_event_index",
        "Index of the last served-view event (the watch index).",
        m.index,
    );
    out.gauges(
        "shoal_dissemination_backlog",
        "Updates still being disseminated, by kind.",
        "kind",
        [
            ("swim", m.backlog.0 as u64),
            ("metadata", m.backlog.1 as u64),
        ],
    );
    crate::api::keys::render_metrics(out, &m.trust);
    crate::api::limits::render_metrics(out, &m.api);
}

/// User events and queries (`core::fleet`); handler runs are `agent::handlers`'.
fn render_fleet(out: &mut Exposition, s: &Stats) {
    for (name, help, v) in [
        (
            "shoal_events_fired_total",
            "User events fired on this agent.",
            s.events_fired,
        ),
        (
            "shoal_events_received_total",
            "User events from other members delivered here (once each).",
            s.events_received,
        ),
        (
            "shoal_events_delivered_total",
            "User events delivered here: fired here or received, once each.",
            s.events_fired + s.events_received,
        ),
        (
            "shoal_events_coalesced_total",
            "User events not delivered: a newer one of the same name was.",
            s.events_coalesced,
        ),
        (
            "shoal_events_duplicate_total",
            "User events received again (already delivered, or older than remembered).",
            s.events_duplicate,
        ),
        (
            "shoal_events_dropped_too_big_total",
            "User events refused when fired here: payload past event_payload_max.",
            s.events_too_big,
        ),
        (
            "shoal_queries_sent_total",
            "Queries asked from this agent.",
            s.queries_sent,
        ),
        (
            "shoal_queries_received_total",
            "Queries from other members processed here.",
            s.queries_received,
        ),
        (
            "shoal_queries_answered_total",
            "Queries this agent answered (its query handler's output sent).",
            s.queries_answered,
        ),
        (
            "shoal_query_answers_received_total",
            "Answers received to queries asked from this agent.",
            s.query_answers_received,
        ),
        (
            "shoal_queries_timed_out_total",
            "Queries asked from this agent that ended at their timeout with answers missing.",
            s.queries_timed_out,
        ),
        (
            "shoal_queries_dropped_rate_total",
            "Queries dropped by the rate limit of queries processed.",
            s.queries_dropped_rate,
        ),
    ] {
        out.counter(name, help, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_type() {
        let input = MetricsInput {
            stats: Stats {
                dropped_bad_magic: 3,
                ..Stats::default()
            },
            guard: GuardReport {
                mode: Default::default(),
                state: GuardState::Frozen,
                since_ms: 0,
                reason: String::new(),
                held: 2,
                baseline: 5,
                escalated: false,
                would_hold: 0,
            },
            members: [(ServedStatus::Alive, 4)].into_iter().collect(),
            active_peers: 3,
            idle: false,
            index: 9,
            backlog: (0, 1),
            trust: Default::default(),
            api: Default::default(),
        };
        let mut e = Exposition::default();
        render(&mut e, &input);
        let text = e.encode();
        assert!(text.contains("shoal_encrypted 0\n"));
        assert!(text.contains("shoal_members{status=\"alive\"} 4\n"));
        assert!(text.contains("shoal_members{status=\"held\"} 0\n"));
        assert!(text.contains("shoal_datagrams_dropped_total{reason=\"bad_magic\"} 3\n"));
        assert!(text.contains("shoal_guard_state{state=\"frozen\"} 1\n"));
        assert!(text.contains("shoal_guard_state{state=\"normal\"} 0\n"));
        assert!(text.contains("shoal_guard_held_members 2\n"));
        // Every sample belongs to a family announced with HELP and TYPE (a counter's family
        // is named without the samples' `_total`).
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let sample = line.split(['{', ' ']).next().unwrap_or_default();
            let name = sample.strip_suffix("_total").unwrap_or(sample);
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} has no TYPE"
            );
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
        }
    }
}
