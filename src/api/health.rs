//! The local API's health routes and helpers: `GET /v1/checks` (this agent's checks),
//! `PUT /v1/checks/{id}/pass|warn|fail` (a ttl check's update from the app), the `passing`
//! filter of `/v1/services`, and the validation of a registration's `checks`.
//!
//! Reads the node under its lock (never across an await); runs no check itself (the agent's
//! `CheckManager` does).

use crate::agent::checks::{resolve_services, CheckDef, CheckError, CheckView};
use crate::agent::shared::AgentShared;
use crate::api::error::HttpError;
use crate::api::state::ApiState;
use crate::api::types::ServiceRequest;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::Json;
use serde::{Deserialize, Serialize};
use shoal_core::{GuardReport, Health, Instance, Node};
use std::collections::BTreeMap;

/// Longest ttl update note kept (the body or `?note=`).
pub const MAX_NOTE: usize = 4096;

/// `GET /v1/checks`: `{"checks": [CheckView]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecksResponse {
    pub checks: Vec<CheckView>,
}

/// `PUT /v1/checks/{id}/{action}`: `{"check": CheckView}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResponse {
    pub check: CheckView,
}

impl From<CheckError> for HttpError {
    fn from(e: CheckError) -> Self {
        let status = match &e {
            CheckError::NotFound(_) => StatusCode::NOT_FOUND,
            CheckError::NotTtl { .. } | CheckError::Duplicate(_) => StatusCode::CONFLICT,
            CheckError::TooMany(_) | CheckError::TooManyOnAgent => StatusCode::UNPROCESSABLE_ENTITY,
            CheckError::Invalid { .. } => StatusCode::BAD_REQUEST,
        };
        HttpError::new(status, e.to_string())
    }
}

/// `passing` (or `passing=1|true`): only instances in the passing view.
pub fn parse_passing(pairs: &[(String, String)]) -> Result<bool, HttpError> {
    let mut on = false;
    for (_, v) in pairs.iter().filter(|(k, _)| k == "passing") {
        on = match v.as_str() {
            "" | "1" | "true" => true,
            "0" | "false" => false,
            _ => {
                return Err(HttpError::bad_request(format!(
                    "passing={v:?}: write `passing` alone (or passing=true|false)"
                )))
            }
        };
    }
    Ok(on)
}

/// Keeps the instances of the passing view (passing, or critical and held by the health
/// guard, which say so in `health_held`) when `passing` is set.
pub fn filter_passing(mut v: Vec<Instance>, passing: bool) -> Vec<Instance> {
    if passing {
        v.retain(|i| i.in_passing_view(false));
    }
    v
}

/// Validates the `checks` of a registration (ids unique on this agent).
pub fn resolve_checks(
    shared: &AgentShared,
    req: &ServiceRequest,
) -> Result<Vec<CheckDef>, HttpError> {
    if req.checks.is_empty() {
        return Ok(Vec::new());
    }
    if req.health.is_some() {
        return Err(HttpError::bad_request(
            "give either \"health\" (the app reports it) or \"checks\" (the agent runs them), \
             not both",
        ));
    }
    if req.checks.iter().any(|c| c.exec.is_some())
        && !shared
            .api_exec_checks
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Err(HttpError::new(
            axum::http::StatusCode::FORBIDDEN,
            format!(
                "service {:?}: exec checks are not accepted through the API (they would run \
                 commands as the agent's user for whoever reaches it): put the check in the \
                 config file, or set enable_api_exec_checks = true there",
                req.name
            ),
        ));
    }
    // Checks attach to the instance: their default ids are `service:ID`.
    let id = req.instance_id();
    let mut v = resolve_services([(id, req.checks.as_slice())])?;
    let defs = v.pop().map(|(_, d)| d).unwrap_or_default();
    shared.checks.check_ids(id, &defs)?;
    Ok(defs)
}

pub(crate) async fn list(State(st): State<ApiState>) -> Json<ChecksResponse> {
    Json(ChecksResponse {
        checks: st.shared.checks.list(),
    })
}

pub(crate) async fn ttl_update(
    State(st): State<ApiState>,
    Path((id, action)): Path<(String, String)>,
    uri: Uri,
    body: Bytes,
) -> Result<Json<CheckResponse>, HttpError> {
    let health = match action.as_str() {
        "pass" => Health::Passing,
        "warn" => Health::Warning,
        "fail" => Health::Critical,
        _ => {
            return Err(HttpError::not_found(format!(
                "no action {action:?}: use PUT /v1/checks/{id}/pass, /warn or /fail"
            )))
        }
    };
    let pairs = crate::api::body::query_pairs(&uri);
    let note = pairs
        .iter()
        .find(|(k, _)| k == "note")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    if note.len() > MAX_NOTE {
        return Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the note is over {MAX_NOTE} bytes; send the first lines only"),
        ));
    }
    let check = st.shared.checks.ttl_update(&id, health, note)?;
    Ok(Json(CheckResponse { check }))
}

/// The health figures of `/metrics` (taken under one lock of the node).
pub struct HealthMetrics {
    /// Served instances by (service, health).
    instances: BTreeMap<(String, Health), usize>,
    /// Services whose health guard is not `normal`.
    guard: BTreeMap<String, GuardReport>,
    /// Every service served (so that a service with no frozen guard reports 0).
    services: Vec<String>,
}

impl HealthMetrics {
    pub fn read(node: &Node) -> Self {
        let mut instances = BTreeMap::new();
        let served = node.services();
        for (name, v) in &served {
            for i in v {
                *instances.entry((name.clone(), i.health())).or_default() += 1;
            }
        }
        HealthMetrics {
            instances,
            guard: node.health_reports(),
            services: served.into_keys().collect(),
        }
    }

    /// Adds the health families to the `/metrics` exposition.
    pub fn render(&self, out: &mut crate::api::exposition::Exposition) {
        out.labelled(
            "shoal_service_instances",
            "Served instances of each service, by the health their owner reports.",
            false,
            self.services.iter().flat_map(|s| {
                [Health::Passing, Health::Warning, Health::Critical].map(|h| {
                    let n = self.instances.get(&(s.clone(), h)).copied().unwrap_or(0);
                    (
                        vec![("service", s.clone()), ("health", h.to_string())],
                        n as u64,
                    )
                })
            }),
        );
        out.gauges(
            "shoal_health_guard_frozen",
            "1 while a service's health guard holds its critical instances in the passing view.",
            "service",
            self.services
                .iter()
                .map(|s| (s.clone(), u64::from(self.guard.contains_key(s)))),
        );
        out.gauges(
            "shoal_health_guard_held_instances",
            "Critical instances the health guard serves as held in the passing view.",
            "service",
            self.services.iter().map(|s| {
                let v = self.guard.get(s).map(|r| r.held).unwrap_or(0);
                (s.clone(), v as u64)
            }),
        );
    }
}
