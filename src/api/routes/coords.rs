//! Routes of network coordinates: `/v1/coordinates` (every coordinate this agent knows),
//! `/v1/rtt/{a}` and `/v1/rtt/{a}/{b}` (estimated round trips), and the `near` ordering the
//! service routes share with the Consul API (`near_order`).
//!
//! Owns the mapping from the core's coordinates to the API's shapes and the nearest-first
//! sort. Must not change the node.

use super::*;
use axum::extract::{Path, State};
use axum::Json;
use shoal_core::Node;
use std::collections::BTreeMap;

/// The name `near` takes for this agent (Consul's `?near=_agent`).
pub const NEAR_AGENT: &str = "_agent";

/// Estimated round trips in µs from `near` (a member's name or `_agent`) to every member
/// with a coordinate, or `None` when `near` has no coordinate here (Consul then leaves the
/// order as it is).
pub(crate) fn near_order(node: &Node, near: &str) -> Option<BTreeMap<String, u64>> {
    let from = if near == NEAR_AGENT {
        node.name().to_string()
    } else {
        near.to_string()
    };
    node.rtt_between(&from, &from)?;
    Some(
        node.coordinates()
            .into_iter()
            .filter_map(|(n, _)| Some((n.to_string(), node.rtt_between(&from, &n)?.rtt_us)))
            .collect(),
    )
}

/// Sorts `items` nearest first by `rtt` (stable; unknown ones last).
pub(crate) fn sort_near<T>(
    items: &mut [T],
    rtt: &BTreeMap<String, u64>,
    node_of: impl Fn(&T) -> &str,
) {
    items.sort_by_key(|i| rtt.get(node_of(i)).copied().unwrap_or(u64::MAX));
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub(super) async fn coordinates(State(st): State<ApiState>) -> Json<CoordinatesResponse> {
    let node = st.shared.lock();
    let me = node.name().to_string();
    let coordinates = node
        .coordinates()
        .into_iter()
        .map(|(n, c)| NodeCoordinate {
            rtt_ms: ms(node.rtt_to(&n).unwrap_or(0)),
            node: n.to_string(),
            coord: CoordView::from(&c),
        })
        .collect();
    Json(CoordinatesResponse {
        node: me,
        coordinates,
    })
}

fn rtt_answer(node: &Node, from: &str, to: &str) -> HttpResult<Json<RttResponse>> {
    for n in [from, to] {
        if node.rtt_between(n, n).is_none() {
            return Err(HttpError::not_found(format!(
                "no coordinate for {n:?} here yet: a member's coordinate arrives once this \
                 agent has probed it (see GET /v1/coordinates)"
            )));
        }
    }
    let est = node
        .rtt_between(from, to)
        .ok_or_else(|| HttpError::not_found(format!("no estimate between {from:?} and {to:?}")))?;
    Ok(Json(RttResponse {
        from: from.to_string(),
        to: to.to_string(),
        rtt_ms: ms(est.rtt_us),
        rtt_us: est.rtt_us,
        source: if est.measured {
            "measured"
        } else {
            "coordinates"
        }
        .to_string(),
    }))
}

pub(super) async fn rtt_from_agent(
    State(st): State<ApiState>,
    Path(to): Path<String>,
) -> HttpResult<Json<RttResponse>> {
    let node = st.shared.lock();
    let me = node.name().to_string();
    rtt_answer(&node, &me, &to)
}

pub(super) async fn rtt_between(
    State(st): State<ApiState>,
    Path((a, b)): Path<(String, String)>,
) -> HttpResult<Json<RttResponse>> {
    let node = st.shared.lock();
    rtt_answer(&node, &a, &b)
}
