//! Routes of the partition guard: `/v1/guard` (report), `/v1/guard/freeze` and
//! `/v1/guard/thaw` (operator overrides, logged with who asked; `?cluster=true` thaws every
//! agent this one reaches, the command sealed under the cluster key).
//!
//! Must not decide anything about the guard: the core does.

use super::*;
use crate::api::body::query_pairs;
use axum::extract::State;
use axum::Json;
use shoal_core::{Node, Time};

pub(super) fn guard_response(node: &Node) -> GuardResponse {
    GuardResponse {
        index: node.index(),
        guard: node.guard_report(),
        told: None,
    }
}

pub(super) async fn guard(State(st): State<ApiState>) -> Json<GuardResponse> {
    Json(guard_response(&st.shared.lock()))
}

pub(super) async fn guard_freeze(State(st): State<ApiState>, Who(who): Who) -> Json<GuardResponse> {
    guard_override(&st, &who, "freeze", Node::guard_freeze)
}

pub(super) async fn guard_thaw(
    State(st): State<ApiState>,
    Who(who): Who,
    uri: Uri,
) -> HttpResult<Json<GuardResponse>> {
    let pairs = query_pairs(&uri);
    check_known(&pairs, &["cluster"])?;
    let cluster = match pairs.iter().find(|(k, _)| k == "cluster") {
        None => false,
        Some((_, v)) => match v.as_str() {
            "" | "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(HttpError::bad_request(format!(
                    "cluster={v:?}: give cluster=true (every agent) or leave it out (this one)"
                )))
            }
        },
    };
    if !cluster {
        return Ok(guard_override(&st, &who, "thaw", Node::guard_thaw));
    }
    let r = st.shared.with_node(|node, now| {
        let told = node.guard_thaw_cluster(now, &format!("api ({who})"));
        GuardResponse {
            told: Some(told),
            ..guard_response(node)
        }
    });
    tracing::warn!(
        action = "thaw",
        via = "api",
        by = %who,
        told = r.told,
        state = r.guard.state.as_str(),
        "operator override of the guard through the API: cluster-wide thaw"
    );
    Ok(Json(r))
}

/// An operator override of the guard, audited in the log with who asked.
pub(super) fn guard_override(
    st: &ApiState,
    who: &str,
    action: &'static str,
    apply: fn(&mut Node, Time, &str),
) -> Json<GuardResponse> {
    let r = st.shared.with_node(|node, now| {
        apply(node, now, &format!("api ({who})"));
        guard_response(node)
    });
    tracing::warn!(
        action,
        via = "api",
        by = %who,
        state = r.guard.state.as_str(),
        "operator override of the guard through the API: {action}"
    );
    Json(r)
}
