//! Routes of the local node's services and tags: `/v1/services` (list, register),
//! `/v1/services/{name}` (instances, deregister), `/v1/tags` and `/v1/tags/{key}`.
//!
//! Owns the instance filters and the metadata commands (each persisted before it answers:
//! `agent::registrations`). Must not drain the node's outputs.

use super::*;
use crate::agent::registrations::{persist_or_log, RegistrationsError};
use crate::api::body::{query_pairs, JsonBody};
use crate::api::error::HttpError;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::Json;
use shoal_core::{ServedStatus, Service};
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn filter_instances(
    mut v: Vec<shoal_core::Instance>,
    statuses: &Option<BTreeSet<ServedStatus>>,
) -> Vec<shoal_core::Instance> {
    if let Some(s) = statuses {
        v.retain(|i| s.contains(&i.status));
    }
    v
}

pub(super) async fn services(
    State(st): State<ApiState>,
    uri: Uri,
) -> HttpResult<Json<ServicesResponse>> {
    let pairs = query_pairs(&uri);
    check_known(&pairs, &["status", "index", "wait", "passing"])?;
    let statuses = parse_statuses(&pairs)?;
    let passing = crate::api::health::parse_passing(&pairs)?;
    if let Some((after, wait)) = parse_blocking(&pairs)? {
        wait_for_index(&st, after, wait).await;
    }
    let node = st.shared.lock();
    let services = node
        .services()
        .into_iter()
        .map(|(k, v)| {
            let v = crate::api::health::filter_passing(filter_instances(v, &statuses), passing);
            (k, v)
        })
        .filter(|(_, v)| !v.is_empty() || (statuses.is_none() && !passing))
        .collect();
    Ok(Json(ServicesResponse {
        index: node.index(),
        guard: node.guard_report(),
        services,
        health_guard: node.health_reports(),
    }))
}

pub(super) async fn service(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    uri: Uri,
) -> HttpResult<Json<ServiceResponse>> {
    let pairs = query_pairs(&uri);
    check_known(&pairs, &["status", "index", "wait", "passing", "near"])?;
    let statuses = parse_statuses(&pairs)?;
    let passing = crate::api::health::parse_passing(&pairs)?;
    let near = pairs
        .iter()
        .find(|(k, _)| k == "near")
        .map(|(_, v)| v.clone());
    if let Some((after, wait)) = parse_blocking(&pairs)? {
        wait_for_index(&st, after, wait).await;
    }
    let node = st.shared.lock();
    let instances = node.services().remove(&name).unwrap_or_default();
    let health_guard = node.health_reports().remove(&name);
    let mut instances =
        crate::api::health::filter_passing(filter_instances(instances, &statuses), passing);
    // `?near=_agent` or `?near=NODE`: nearest first by network coordinates.
    if let Some(rtt) = near.and_then(|n| super::coords::near_order(&node, &n)) {
        super::coords::sort_near(&mut instances, &rtt, |i| &i.node);
    }
    Ok(Json(ServiceResponse {
        index: node.index(),
        guard: node.guard_report(),
        instances,
        service: name,
        health_guard,
    }))
}

pub(super) async fn set_tags(
    State(st): State<ApiState>,
    JsonBody(req): JsonBody<TagsRequest>,
) -> HttpResult<Json<MemberResponse>> {
    let r = st.shared.with_node(|node, now| {
        node.set_tags(now, &req.set, &req.delete)?;
        Ok::<_, HttpError>(member_response(node))
    })?;
    tracing::info!(
        set = req.set.len(),
        deleted = req.delete.len(),
        "tags changed through the API"
    );
    persisted(persist_or_log(&st.shared, "tags").await)?;
    Ok(Json(r))
}

pub(super) async fn delete_tag(
    State(st): State<ApiState>,
    Path(key): Path<String>,
) -> HttpResult<Json<MemberResponse>> {
    let r = st.shared.with_node(|node, now| {
        if node.has_left() {
            return Err(HttpError::from(shoal_core::NodeError::Left));
        }
        if !node.own_meta().tags.contains_key(&key) {
            return Err(HttpError::not_found(format!(
                "no tag {key:?} is set on this node; see its tags with GET /v1/self"
            )));
        }
        node.set_tags(now, &BTreeMap::new(), std::slice::from_ref(&key))?;
        Ok(member_response(node))
    })?;
    tracing::info!(key = %key, "tag deleted through the API");
    persisted(persist_or_log(&st.shared, "tag deleted").await)?;
    Ok(Json(r))
}

pub(super) async fn register_service(
    State(st): State<ApiState>,
    JsonBody(req): JsonBody<ServiceRequest>,
) -> HttpResult<Json<MemberResponse>> {
    let defs = crate::api::health::resolve_checks(&st.shared, &req)?;
    let specs = req.checks.clone();
    let id = req.instance_id().to_string();
    let svc = Service {
        name: req.name,
        port: req.port,
        tags: req.tags,
        health: crate::agent::checks::initial_health(&defs).or(req.health),
        health_output: None,
    };
    let name = svc.name.clone();
    let checks = defs.len();
    let r = st.shared.with_node(|node, now| {
        node.register_instance(now, &id, svc)?;
        // Under the node's lock: a check result cannot publish before the service exists.
        st.shared.checks.set_checks(node, &id, defs, now);
        with_api_checks(&st.shared, |c| c.insert(id.clone(), specs));
        Ok::<_, HttpError>(member_response(node))
    })?;
    tracing::info!(service = %name, id = %id, checks, "service registered through the API");
    persisted(persist_or_log(&st.shared, "service registered").await)?;
    Ok(Json(r))
}

/// `DELETE /v1/services/{id}`: the instance of that id, else the one instance of the service
/// of that name (a `409` when it has several: the caller must say which).
pub(super) async fn deregister_service(
    State(st): State<ApiState>,
    Path(key): Path<String>,
) -> HttpResult<Json<MemberResponse>> {
    let (r, id) = st.shared.with_node(|node, now| {
        if node.has_left() {
            return Err(HttpError::from(shoal_core::NodeError::Left));
        }
        let id = node.resolve_instance(&key).map_err(|e| match e {
            shoal_core::NodeError::NoSuchService(_) => HttpError::not_found(format!(
                "no service instance or service named {key:?} is registered on this node; \
                 see its services with GET /v1/self"
            )),
            e => e.into(),
        })?;
        st.shared.checks.set_checks(node, &id, Vec::new(), now);
        with_api_checks(&st.shared, |c| c.remove(&id));
        node.deregister_service(now, &id)?;
        Ok((member_response(node), id))
    })?;
    tracing::info!(id = %id, "service deregistered through the API");
    persisted(persist_or_log(&st.shared, "service deregistered").await)?;
    Ok(Json(r))
}

fn with_api_checks<R>(
    shared: &crate::agent::AgentShared,
    f: impl FnOnce(&mut crate::agent::registrations::Checks) -> R,
) -> R {
    let mut state = shared
        .registrations
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    f(&mut state.api_checks)
}

/// A change applied but not written to `registrations.json` is a 500: the app must know it
/// will not survive a restart (it may retry, or the operator free the disk).
fn persisted(res: Result<(), RegistrationsError>) -> HttpResult<()> {
    res.map_err(|e| {
        HttpError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "applied, but not persisted ({e}): it will not survive a restart of the agent; \
                 fix the data directory (disk full? permissions?) and send the change again"
            ),
        )
    })
}
