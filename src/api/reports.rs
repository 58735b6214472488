//! The local API's outlier routes: `POST /v1/reports` (a local app, or a proxy for it,
//! reports the outcomes of its calls to service instances, in batches) and the outlier
//! figures of `/metrics`.
//!
//! Owns the request and answer shapes and their validation at decode (unknown fields, batch
//! size, counts; the body size is the API's `MAX_BODY`). The decision to eject is the core's
//! (`shoal_core::outlier`); this file must not decide anything, and reads the node under its
//! lock (never across an await). A report is a command: on a TCP listener it needs the API
//! token like every other.

use crate::api::body::{BodyShape, JsonBody};
use crate::api::error::HttpError;
use crate::api::state::ApiState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use shoal_core::ReportError;
use shoal_core::{Node, Outcomes, OutlierStatus};
use shoal_core::{OutlierCounters, MAX_COUNT};
use std::collections::BTreeMap;

/// Longest service or node name a report may carry (the core's own limits are smaller; this
/// only refuses an absurd one before any lookup).
pub const MAX_NAME: usize = 256;

/// One report: calls to `node`'s instance of `service` since the app's last report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub service: String,
    pub node: String,
    /// The instance id on `node`: needed when it runs several instances of `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub success: u64,
    #[serde(default)]
    pub error: u64,
    #[serde(default)]
    pub timeout: u64,
}

/// `POST /v1/reports` body: `{"reports": [Report]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsRequest {
    pub reports: Vec<Report>,
}

impl BodyShape for ReportsRequest {
    const SHAPE: &'static str = r#"{"reports": [{"service": "web", "node": "n3", "success": 120, "error": 7, "timeout": 2}]}"#;
}

/// The answer: each reported instance's window and ejection after the batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportsResponse {
    pub index: u64,
    pub instances: Vec<OutlierStatus>,
}

impl From<ReportError> for HttpError {
    fn from(e: ReportError) -> Self {
        let status = match &e {
            ReportError::NoSuchService(_) | ReportError::NoSuchInstance { .. } => {
                StatusCode::NOT_FOUND
            }
            ReportError::AmbiguousInstance { .. } => StatusCode::CONFLICT,
            ReportError::TooMany(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ReportError::Empty | ReportError::NoCalls { .. } | ReportError::TooLarge { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
        };
        HttpError::new(status, e.to_string())
    }
}

/// Checks what the core does not: name lengths (before any lookup).
fn validate(req: &ReportsRequest) -> Result<(), HttpError> {
    for (i, r) in req.reports.iter().enumerate() {
        if r.service.len() > MAX_NAME
            || r.node.len() > MAX_NAME
            || r.id.as_ref().is_some_and(|id| id.len() > MAX_NAME)
        {
            return Err(HttpError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("report {i}: a service, node or instance id is over {MAX_NAME} bytes"),
            ));
        }
        if r.success > MAX_COUNT || r.error > MAX_COUNT || r.timeout > MAX_COUNT {
            return Err(ReportError::TooLarge { index: i }.into());
        }
    }
    Ok(())
}

pub(crate) async fn post(
    State(st): State<ApiState>,
    JsonBody(req): JsonBody<ReportsRequest>,
) -> Result<Json<ReportsResponse>, HttpError> {
    validate(&req)?;
    let batch: Vec<shoal_core::InstanceReport> = req
        .reports
        .into_iter()
        .map(|r| {
            (
                r.service,
                r.node,
                r.id,
                Outcomes {
                    success: r.success,
                    error: r.error,
                    timeout: r.timeout,
                },
            )
        })
        .collect();
    let r = st.shared.with_node(|node, now| {
        let instances = node.report_instance_outcomes(now, &batch)?;
        Ok::<_, HttpError>(ReportsResponse {
            index: node.index(),
            instances,
        })
    })?;
    Ok(Json(r))
}

/// The outlier figures of `/metrics` (taken under one lock of the node).
pub struct OutlierMetrics {
    counters: OutlierCounters,
    ejected: BTreeMap<String, usize>,
    /// Every service served (so that a service with none ejected reports 0).
    services: Vec<String>,
}

impl OutlierMetrics {
    pub fn read(node: &Node) -> Self {
        OutlierMetrics {
            counters: node.outlier_counters(),
            ejected: node.outlier_ejected_counts(),
            services: node.services().into_keys().collect(),
        }
    }

    /// Adds the outlier families to the `/metrics` exposition.
    pub fn render(&self, out: &mut crate::api::exposition::Exposition) {
        let c = &self.counters;
        for (name, help, v) in [
            (
                "shoal_outlier_ejections_total",
                "Instances ejected from apps' reports.",
                c.ejections,
            ),
            (
                "shoal_outlier_restorations_total",
                "Ejected instances restored after their back-off.",
                c.restorations,
            ),
            (
                "shoal_outlier_capped_total",
                "Instances past the threshold left served by the max_ejection_ratio cap.",
                c.capped,
            ),
            (
                "shoal_outlier_reports_total",
                "Instance reports received from local apps.",
                c.reports,
            ),
        ] {
            out.counter(name, help, v);
        }
        let mut names: Vec<&String> = self.services.iter().collect();
        names.extend(self.ejected.keys());
        names.sort();
        names.dedup();
        out.gauges(
            "shoal_outlier_ejected_instances",
            "Instances of each service ejected now.",
            "service",
            names
                .into_iter()
                .map(|s| (s.clone(), self.ejected.get(s).copied().unwrap_or(0) as u64)),
        );
    }
}
