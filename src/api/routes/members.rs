//! Routes of the membership: `/v1/members`, `/v1/members/{name}` (and its `/history`),
//! `/v1/self`, `/v1/join`,
//! `/v1/leave` and `/v1/force-leave/{name}`, and the served-view snapshot the watch stream starts
//! with.
//!
//! Owns the shaping of members and the membership commands. Must not drain the node's outputs.

use super::*;
use crate::api::body::{query_pairs, JsonBody};
use crate::api::error::HttpError;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::Json;
use shoal_core::Node;
use std::net::SocketAddr;
use std::time::Duration;

/// How long resolving one join address may take.
pub(super) const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn member_response(node: &Node) -> MemberResponse {
    MemberResponse {
        index: node.index(),
        guard: node.guard_report(),
        member: node.local_member(),
    }
}

pub(crate) fn snapshot(node: &Node) -> Snapshot {
    Snapshot {
        index: node.index(),
        guard: node.guard_report(),
        members: node.members(),
    }
}

pub(super) async fn members(
    State(st): State<ApiState>,
    uri: Uri,
) -> HttpResult<Json<MembersResponse>> {
    let pairs = query_pairs(&uri);
    check_known(&pairs, &["status", "name", "tag", "index", "wait"])?;
    let filter = MemberFilter::parse(&pairs)?;
    if let Some((after, wait)) = parse_blocking(&pairs)? {
        wait_for_index(&st, after, wait).await;
    }
    let node = st.shared.lock();
    Ok(Json(MembersResponse {
        index: node.index(),
        guard: node.guard_report(),
        members: node
            .members()
            .into_iter()
            .filter(|m| filter.matches(m))
            .collect(),
    }))
}

pub(super) async fn member(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> HttpResult<Json<MemberResponse>> {
    let node = st.shared.lock();
    let member = node.member(&name).ok_or_else(|| {
        HttpError::not_found(format!(
            "no member named {name:?} is known to this agent; list them with GET /v1/members"
        ))
    })?;
    Ok(Json(MemberResponse {
        index: node.index(),
        guard: node.guard_report(),
        member,
    }))
}

pub(super) async fn member_history(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> HttpResult<Json<HistoryResponse>> {
    let node = st.shared.lock();
    let member = node.member(&name).ok_or_else(|| {
        HttpError::not_found(format!(
            "no member named {name:?} is known to this agent; list them with GET /v1/members"
        ))
    })?;
    Ok(Json(HistoryResponse {
        index: node.index(),
        guard: node.guard_report(),
        history: node.history(&name),
        member,
    }))
}

pub(super) async fn local(State(st): State<ApiState>) -> Json<SelfResponse> {
    let node = st.shared.lock();
    Json(SelfResponse {
        index: node.index(),
        guard: node.guard_report(),
        member: node.local_member(),
        stats: stats_view(&node),
    })
}

pub(super) async fn resolve(addr: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    if !addr.contains(':') {
        return Err("missing port: use IP:PORT or host:PORT".into());
    }
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(addr)).await {
        Err(_) => Err(format!(
            "name resolution timed out after {} s",
            RESOLVE_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!("cannot resolve: {e}")),
        Ok(Ok(it)) => {
            let v: Vec<SocketAddr> = it.collect();
            if v.is_empty() {
                Err("the name has no address".into())
            } else {
                Ok(v)
            }
        }
    }
}

pub(super) async fn join(
    State(st): State<ApiState>,
    JsonBody(req): JsonBody<JoinRequest>,
) -> HttpResult<Json<JoinResponse>> {
    if req.addrs.is_empty() {
        return Err(HttpError::bad_request(
            "no address to join: give at least one, e.g. {\"addrs\": [\"10.0.0.1:7946\"]}",
        ));
    }
    if st.shared.lock().has_left() {
        return Err(HttpError::from(shoal_core::NodeError::Left));
    }
    let mut out = JoinResponse::default();
    for a in &req.addrs {
        match resolve(a).await {
            Ok(v) => {
                for x in v {
                    if !out.announced.contains(&x) {
                        out.announced.push(x);
                    }
                }
            }
            Err(error) => out.unresolved.push(Unresolved {
                addr: a.clone(),
                error,
            }),
        }
    }
    if !out.announced.is_empty() {
        let addrs = out.announced.clone();
        st.shared.with_node(|node, now| node.join(now, &addrs))?;
    }
    tracing::info!(
        announced = out.announced.len(),
        unresolved = out.unresolved.len(),
        "join requested through the API"
    );
    Ok(Json(out))
}

pub(super) async fn leave(
    State(st): State<ApiState>,
    Who(who): Who,
) -> HttpResult<Json<LeaveResponse>> {
    let flushed = st.shared.flushed.notified();
    tokio::pin!(flushed);
    flushed.as_mut().enable();
    let events = st.shared.events.subscribe();
    st.shared.with_node(|node, now| node.leave(now))?;
    tracing::info!(by = %who, "leave requested through the API");
    // The core says when the leave is finished (sent, and spread for two gossip intervals).
    let deadline = tokio::time::Instant::now() + LEAVE_FLUSH_WAIT;
    let finished = st.shared.leave_finished(events, deadline).await;
    let flushed = finished || tokio::time::timeout_at(deadline, flushed).await.is_ok();
    if !finished {
        tracing::warn!("the leave did not finish within 2 s (flushed: {flushed})");
    }
    // The node left for good: `shoal agent` stops (the leave is finished) and exits.
    st.shared.left_via_api.notify_one();
    Ok(Json(LeaveResponse {
        left: true,
        flushed,
        finished,
    }))
}

/// `POST /v1/force-leave/{name}` (Serf's name): the operator removes a failed or held member
/// here and on every active agent. Audited in the log.
pub(super) async fn force_leave(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Who(who): Who,
) -> HttpResult<Json<ForceLeaveResponse>> {
    let r = st.shared.with_node(|node, now| {
        if node.member(&name).is_none() {
            return Err(HttpError::not_found(format!(
                "no member named {name:?} is known to this agent; list them with GET /v1/members"
            )));
        }
        let by = format!("operator {who} on this agent");
        let (released, told) = node.force_leave_by(now, &name, &by)?;
        Ok(ForceLeaveResponse {
            index: node.index(),
            guard: node.guard_report(),
            node: name.clone(),
            released,
            told,
        })
    })?;
    tracing::warn!(
        node = %name,
        by = %who,
        released = r.released,
        told = r.told,
        "operator force-leave through the API"
    );
    Ok(Json(r))
}
