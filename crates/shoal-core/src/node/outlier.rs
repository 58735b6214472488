//! The node's side of outlier ejection: checks an app's reports against the served view,
//! feeds them to `core::outlier` with the census of the service's instances, and turns its
//! transitions into events and its deadlines into the node's `TimerName::Outlier`.
//!
//! A child module of `core::node` (it reaches the node's fields) so that node/mod.rs keeps only
//! a few hook lines. Must not decide anything itself (`core::outlier` does) and stays sans-IO.

use super::{EventKind, Node};
use crate::outlier::{Census, Ejection, Outcomes, OutlierCounters, OutlierStatus, MAX_COUNT};
use crate::time::Time;
use crate::timers::TimerName;
use std::collections::BTreeMap;
use thiserror::Error;

/// Most reports in one batch (`POST /v1/reports`).
pub(super) const MAX_REPORTS: usize = 256;

/// Why a batch of reports was refused (nothing of it was counted).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("no report given: send {{\"reports\":[{{\"service\":..,\"node\":..,\"error\":N}}]}}")]
    /// The batch is empty.
    Empty,
    #[error("{0} reports in one batch; the limit is {MAX_REPORTS}: send several batches")]
    /// The batch is over `MAX_REPORTS`.
    TooMany(usize),
    #[error("no service named {0:?} is served by this agent (see GET /v1/services)")]
    /// No such service in the served view.
    NoSuchService(String),
    #[error(
        "{node:?} offers no instance of {service:?} in this agent's served view (see GET \
         /v1/services/{service})"
    )]
    /// The node offers no instance of the service.
    NoSuchInstance {
        /// The service.
        service: String,
        /// The node.
        node: String,
    },
    #[error("{node:?} runs several instances of {service:?} ({ids}): give the instance's \"id\"")]
    /// The node runs several instances of the service: the report must give the id.
    AmbiguousInstance {
        /// The service.
        service: String,
        /// The node.
        node: String,
        /// Its instance ids.
        ids: String,
    },
    #[error(
        "report {index} counts no call: give success, error or timeout counts (at least one \
         above 0)"
    )]
    /// A report counts no call.
    NoCalls {
        /// The report's place in the batch.
        index: usize,
    },
    #[error("report {index} counts more than {MAX_COUNT} calls of one outcome: report more often")]
    /// A report counts more than `MAX_COUNT` calls of one outcome.
    TooLarge {
        /// The report's place in the batch.
        index: usize,
    },
}

/// One app's report: calls to `node`'s instance of `service` (`id`: which one, needed when
/// the node runs several), and their outcomes.
pub type InstanceReport = (String, String, Option<String>, Outcomes);

impl Node {
    /// Reports of local apps: the outcomes of their calls to `node`'s instance of `service`
    /// (its only instance on `node`). See [`Node::report_instance_outcomes`].
    pub fn report_outcomes(
        &mut self,
        now: Time,
        reports: &[(String, String, Outcomes)],
    ) -> Result<Vec<OutlierStatus>, ReportError> {
        let reports: Vec<InstanceReport> = reports
            .iter()
            .map(|(s, n, o)| (s.clone(), n.clone(), None, *o))
            .collect();
        self.report_instance_outcomes(now, &reports)
    }

    /// Reports of local apps: the outcomes of their calls to an instance. The whole batch is
    /// checked first (every instance served now, named by its id when its node runs several
    /// instances of the service, counts bounded); on an error nothing is counted. Returns
    /// each instance's window and ejection after the batch.
    pub fn report_instance_outcomes(
        &mut self,
        now: Time,
        reports: &[InstanceReport],
    ) -> Result<Vec<OutlierStatus>, ReportError> {
        if reports.is_empty() {
            return Err(ReportError::Empty);
        }
        if reports.len() > MAX_REPORTS {
            return Err(ReportError::TooMany(reports.len()));
        }
        self.now = now;
        let served = self.services();
        let mut census: BTreeMap<&str, Vec<Census>> = BTreeMap::new();
        let mut ids = Vec::with_capacity(reports.len());
        for (index, (service, node, id, o)) in reports.iter().enumerate() {
            if o.total() == 0 {
                return Err(ReportError::NoCalls { index });
            }
            if o.success > MAX_COUNT || o.error > MAX_COUNT || o.timeout > MAX_COUNT {
                return Err(ReportError::TooLarge { index });
            }
            let Some(instances) = served.get(service) else {
                return Err(ReportError::NoSuchService(service.clone()));
            };
            let on_node: Vec<&str> = instances
                .iter()
                .filter(|i| i.node == *node)
                .filter(|i| id.as_ref().is_none_or(|id| i.id == *id))
                .map(|i| i.id.as_str())
                .collect();
            match on_node[..] {
                [one] => ids.push(one.to_string()),
                [] => {
                    return Err(ReportError::NoSuchInstance {
                        service: service.clone(),
                        node: node.clone(),
                    })
                }
                _ => {
                    return Err(ReportError::AmbiguousInstance {
                        service: service.clone(),
                        node: node.clone(),
                        ids: on_node.join(", "),
                    })
                }
            }
            census.entry(service.as_str()).or_insert_with(|| {
                instances
                    .iter()
                    .map(|i| Census {
                        node: i.node.clone(),
                        id: i.id.clone(),
                        passing: i.health_passes(false),
                    })
                    .collect()
            });
        }
        for ((service, node, _, o), id) in reports.iter().zip(&ids) {
            let c = census
                .get(service.as_str())
                .map_or(&[][..], |v| v.as_slice());
            self.outliers.report(now, service, (node, id), o, c);
        }
        let out = reports
            .iter()
            .zip(&ids)
            .map(|((s, n, _, _), id)| self.outliers.status(now, s, n, id))
            .collect();
        self.after_input(now);
        Ok(out)
    }

    /// Why and until when `node`'s instance `id` of `service` is ejected, if it is.
    pub fn outlier_ejected(&self, service: &str, node: &str, id: &str) -> Option<&Ejection> {
        self.outliers.ejected(service, node, id)
    }

    /// Instances ejected now, by service (services with none are left out).
    pub fn outlier_ejected_counts(&self) -> BTreeMap<String, usize> {
        self.outliers.ejected_counts()
    }

    /// Ejections, restorations, caps and reports so far.
    pub fn outlier_counters(&self) -> OutlierCounters {
        self.outliers.counters()
    }

    /// Emits the outlier transitions as events and arms the outlier timer when due earlier.
    pub(super) fn outlier_flush(&mut self, now: Time) {
        for t in self.outliers.take_transitions() {
            self.push_event(now, EventKind::Outlier(t));
        }
        if let Some(at) = self.outliers.take_deadline() {
            self.named.set_earliest(TimerName::Outlier, at);
        }
    }
}
