//! Routes of the counters: `/v1/stats` (JSON) and `/metrics` (OpenMetrics text).
//!
//! Owns the shaping of the counters; the exposition format itself is `api::metrics`'s. Reads
//! the node only.

use super::*;
use crate::api::exposition::Exposition;
use crate::api::metrics::{self, MetricsInput, ALL_STATUSES};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use shoal_core::{Node, ServedStatus};
use std::collections::BTreeMap;

pub(super) fn stats_view(node: &Node) -> StatsView {
    let mut counts: BTreeMap<String, usize> = ALL_STATUSES
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    let mut protocols: BTreeMap<String, usize> = BTreeMap::new();
    for m in node.members() {
        *counts.entry(m.status.as_str().to_string()).or_default() += 1;
        if m.status.is_serving() {
            if let Some(p) = m.protocol {
                *protocols.entry(p.to_string()).or_default() += 1;
            }
        }
    }
    let (updates, broadcasts) = node.backlog();
    StatsView {
        counters: node.stats().clone(),
        dropped_total: node.stats().dropped_total(),
        backlog: Backlog {
            updates,
            broadcasts,
        },
        active_peers: node.active_peers(),
        idle: node.is_idle(),
        left: node.has_left(),
        members: counts,
        trust: crate::api::keys::trust_view(node),
        recent_drops: node.drops().recent(),
        recent_drops_evicted: node.drops().evicted(),
        protocols,
    }
}

pub(super) async fn stats(State(st): State<ApiState>) -> Json<StatsResponse> {
    let node = st.shared.lock();
    Json(StatsResponse {
        index: node.index(),
        guard: node.guard_report(),
        stats: stats_view(&node),
    })
}

pub(super) async fn metrics_text(State(st): State<ApiState>) -> Response {
    let health = crate::api::health::HealthMetrics::read(&st.shared.lock());
    let outliers = crate::api::reports::OutlierMetrics::read(&st.shared.lock());
    let input = {
        let node = st.shared.lock();
        let mut members: BTreeMap<ServedStatus, usize> = BTreeMap::new();
        for m in node.members() {
            *members.entry(m.status).or_default() += 1;
        }
        MetricsInput {
            stats: node.stats().clone(),
            guard: node.guard_report(),
            members,
            active_peers: node.active_peers(),
            idle: node.is_idle(),
            index: node.index(),
            backlog: node.backlog(),
            trust: crate::api::keys::trust_view(&node),
            api: st.shared.api_load.view(),
        }
    };
    let mut out = Exposition::default();
    metrics::render(&mut out, &input);
    health.render(&mut out);
    outliers.render(&mut out);
    st.shared.handlers.render(&mut out);
    let mut resp = out.encode().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::api::exposition::CONTENT_TYPE),
    );
    resp
}
