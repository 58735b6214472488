//! The JSON shapes of the Consul-compatible read API, and the mapping from shoal's served
//! view onto them.
//!
//! Owns the Consul field names (`Node`, `Address`, `ServiceTags`, `Checks[].Status`...) and
//! the documented mapping: shoal node tags -> `Node.Meta`; service tags `k=v` -> `Service.Tags`
//! (`"k=v"`, or `"k"` for an empty value) and `Service.Meta`; a `held` member -> a passing
//! check `shoal-guard` whose output says it is held; a `down` member (or an instance the
//! guard does not serve, or a service whose own health is critical) -> `critical`. Pure data:
//! no I/O, no locking, no decisions beyond that mapping (the served view is the guard's).

use serde::Serialize;
use shoal_core::{GuardReport, Health, MemberView, ServedStatus, Service, ServiceView};
use std::collections::{BTreeMap, BTreeSet};

/// Check id of a member's node-level health (Consul's own name, so clients that look for it
/// find it).
pub const SERF_CHECK: &str = "serfHealth";
/// Check id that replaces `serfHealth` for a member the guard holds.
pub const GUARD_CHECK: &str = "shoal-guard";
/// Check id of an instance this agent ejects on its apps' reports (always critical).
pub const OUTLIER_CHECK: &str = "shoal-outlier";
/// Check id that replaces `serfHealth` for a member served `damped` (flap damping): critical.
pub const FLAP_CHECK: &str = "shoal-flap";

pub const PASSING: &str = "passing";
pub const WARNING: &str = "warning";
pub const CRITICAL: &str = "critical";

/// Everything one answer is built from, read under one lock of the node.
#[derive(Clone, Debug)]
pub struct ViewData {
    pub datacenter: String,
    /// The `X-Consul-Index` of this answer (the served view's index + 1: never 0).
    pub index: u64,
    pub guard: GuardReport,
    pub self_name: String,
    /// Every served member but those that left (Consul deregisters a node that leaves).
    pub members: Vec<MemberView>,
    /// (node, instance id) pairs the served view serves (`Node::services`): the guard's word on
    /// which instances apps get, including its per-service `fail_closed` rule.
    pub served: BTreeSet<(String, String)>,
    /// (node, instance id) pairs whose instance is critical but held by the health guard, with
    /// why.
    pub health_held: BTreeMap<(String, String), String>,
    /// (node, instance id) pairs this agent ejects on its apps' reports, with why and until when.
    pub ejected: BTreeMap<(String, String), shoal_core::Ejection>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConsulNode {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Node")]
    pub node: String,
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
    #[serde(rename = "TaggedAddresses")]
    pub tagged_addresses: BTreeMap<String, String>,
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Weights {
    #[serde(rename = "Passing")]
    pub passing: u32,
    #[serde(rename = "Warning")]
    pub warning: u32,
}

const WEIGHTS: Weights = Weights {
    passing: 1,
    warning: 1,
};

/// A service instance as `/v1/health/service` and `/v1/catalog/node` show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConsulService {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Service")]
    pub service: String,
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    #[serde(rename = "Port")]
    pub port: u16,
    #[serde(rename = "Weights")]
    pub weights: Weights,
    #[serde(rename = "EnableTagOverride")]
    pub enable_tag_override: bool,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConsulCheck {
    #[serde(rename = "Node")]
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Status")]
    pub status: &'static str,
    #[serde(rename = "Notes")]
    pub notes: String,
    #[serde(rename = "Output")]
    pub output: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    #[serde(rename = "ServiceTags")]
    pub service_tags: Vec<String>,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

/// One item of `GET /v1/health/service/{name}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthEntry {
    #[serde(rename = "Node")]
    pub node: ConsulNode,
    #[serde(rename = "Service")]
    pub service: ConsulService,
    #[serde(rename = "Checks")]
    pub checks: Vec<ConsulCheck>,
}

/// One item of `GET /v1/catalog/service/{name}` (Consul's flat `CatalogService`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CatalogService {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Node")]
    pub node: String,
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
    #[serde(rename = "TaggedAddresses")]
    pub tagged_addresses: BTreeMap<String, String>,
    #[serde(rename = "NodeMeta")]
    pub node_meta: BTreeMap<String, String>,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    #[serde(rename = "ServiceAddress")]
    pub service_address: String,
    #[serde(rename = "ServiceTags")]
    pub service_tags: Vec<String>,
    #[serde(rename = "ServiceMeta")]
    pub service_meta: BTreeMap<String, String>,
    #[serde(rename = "ServicePort")]
    pub service_port: u16,
    #[serde(rename = "ServiceWeights")]
    pub service_weights: Weights,
    #[serde(rename = "ServiceEnableTagOverride")]
    pub service_enable_tag_override: bool,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

/// `GET /v1/catalog/node/{node}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CatalogNode {
    #[serde(rename = "Node")]
    pub node: ConsulNode,
    #[serde(rename = "Services")]
    pub services: BTreeMap<String, ConsulService>,
}

/// One item of `GET /v1/agent/members` (Serf's member shape as Consul shows it).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentMember {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Addr")]
    pub addr: String,
    #[serde(rename = "Port")]
    pub port: u16,
    #[serde(rename = "Tags")]
    pub tags: BTreeMap<String, String>,
    /// Serf's member status: 1 alive, 3 left, 4 failed (a held member is served, so 1).
    #[serde(rename = "Status")]
    pub status: u8,
}

/// A stable, UUID-shaped node id derived from the node name (Consul clients expect one).
pub fn node_id(name: &str) -> String {
    // Two FNV-1a passes with different offsets: 128 deterministic bits.
    let fnv = |offset: u64| {
        let mut h = offset;
        for b in name.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    let a = fnv(0xcbf2_9ce4_8422_2325);
    let b = fnv(0x6c62_272e_07bb_0142);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// Service tags as Consul tags: `"k=v"`, or `"k"` when the value is empty.
pub fn service_tags(svc: &Service) -> Vec<String> {
    svc.tags
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect()
}

impl ViewData {
    pub fn node(&self, m: &MemberView) -> ConsulNode {
        let ip = m.addr.ip().to_string();
        let (lan, wan) = if m.addr.is_ipv4() {
            ("lan_ipv4", "wan_ipv4")
        } else {
            ("lan_ipv6", "wan_ipv6")
        };
        let tagged = [("lan", &ip), ("wan", &ip), (lan, &ip), (wan, &ip)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        ConsulNode {
            id: node_id(&m.name),
            node: m.name.clone(),
            address: ip,
            datacenter: self.datacenter.clone(),
            tagged_addresses: tagged,
            meta: m.tags.clone(),
            create_index: 1,
            modify_index: self.index,
        }
    }

    pub fn service(&self, m: &MemberView, svc: &ServiceView) -> ConsulService {
        ConsulService {
            id: svc.id.clone(),
            service: svc.name.clone(),
            tags: service_tags(svc),
            address: m.addr.ip().to_string(),
            meta: svc.tags.clone(),
            port: svc.port,
            weights: WEIGHTS,
            enable_tag_override: false,
            create_index: 1,
            modify_index: self.index,
        }
    }

    fn check(
        &self,
        m: &MemberView,
        id: &str,
        name: &str,
        status: &'static str,
        output: String,
        svc: Option<&ServiceView>,
    ) -> ConsulCheck {
        ConsulCheck {
            node: m.name.clone(),
            check_id: id.to_string(),
            name: name.to_string(),
            status,
            notes: String::new(),
            output,
            service_id: svc.map(|s| s.id.clone()).unwrap_or_default(),
            service_name: svc.map(|s| s.name.clone()).unwrap_or_default(),
            service_tags: svc.map(|s| service_tags(s)).unwrap_or_default(),
            kind: if id == SERF_CHECK || id == GUARD_CHECK || id == FLAP_CHECK {
                String::new()
            } else {
                "shoal".to_string()
            },
            create_index: 1,
            modify_index: self.index,
        }
    }

    /// The node-level check of a member: `serfHealth` (passing while alive or suspect,
    /// critical once down) or, for a member the guard holds, `shoal-guard` (passing, with
    /// an output that says so).
    pub fn node_check(&self, m: &MemberView) -> ConsulCheck {
        match m.status {
            ServedStatus::Alive => self.check(
                m,
                SERF_CHECK,
                "Serf Health Status",
                PASSING,
                "Agent alive and reachable".into(),
                None,
            ),
            ServedStatus::Suspect => self.check(
                m,
                SERF_CHECK,
                "Serf Health Status",
                PASSING,
                "Agent suspected by SWIM, not declared down; still served".into(),
                None,
            ),
            ServedStatus::Held => self.check(
                m,
                GUARD_CHECK,
                "shoal guard: held",
                PASSING,
                format!(
                    "held by the shoal guard: SWIM reports this node {}, served as last known \
                     good (guard {}: {})",
                    m.truth
                        .map(|t| format!("{t:?}").to_lowercase())
                        .unwrap_or_else(|| "down".into()),
                    self.guard.state.as_str(),
                    self.guard.reason
                ),
                None,
            ),
            ServedStatus::Restarting => self.check(
                m,
                SERF_CHECK,
                "Serf Health Status",
                PASSING,
                "Agent restarting (it announced a restart): still served until it is back or \
                 its grace runs out"
                    .into(),
                None,
            ),
            ServedStatus::Down | ServedStatus::Left => self.check(
                m,
                SERF_CHECK,
                "Serf Health Status",
                CRITICAL,
                match &m.gray {
                    Some(cause) => format!("Agent unreachable from most observers ({cause})"),
                    None => "Agent not live or unreachable".into(),
                },
                None,
            ),
            ServedStatus::Damped => self.check(
                m,
                FLAP_CHECK,
                "shoal flap damping",
                CRITICAL,
                match &m.damping {
                    Some(d) => format!(
                        "damped: this node kept failing and coming back (penalty {}); not \
                         served until it has been stable a while (reuse at {} ms)",
                        d.penalty,
                        d.reuse_at.unwrap_or(0)
                    ),
                    None => "damped: this node kept failing and coming back".into(),
                },
                None,
            ),
        }
    }

    /// The checks of one instance: the node check, then (when the guard does not serve
    /// this instance, or its owner reports a health) a service check.
    pub fn checks(&self, m: &MemberView, svc: &ServiceView) -> Vec<ConsulCheck> {
        let mut v = vec![self.node_check(m)];
        let key = (m.name.clone(), svc.id.clone());
        let served = self.served.contains(&key);
        if m.status.is_serving() && !served {
            v.push(self.check(
                m,
                &format!("service:{}", svc.id),
                &format!("shoal: {}", svc.name),
                CRITICAL,
                format!(
                    "not served: the guard holds {} but service {} is fail_closed",
                    m.name, svc.name
                ),
                Some(svc),
            ));
        } else if let Some(why) = self.health_held.get(&key) {
            // Critical, held by the health guard: passing, with an output that says so, so
            // that fail-static carries through to Consul clients (as `shoal-guard` does for
            // members).
            v.push(self.check(
                m,
                &format!("service:{}", svc.id),
                &format!("shoal: {}", svc.name),
                PASSING,
                format!(
                    "held by the shoal health guard: the check is critical ({}), served as                      passing because {why}",
                    svc.health_output.as_deref().unwrap_or("no output")
                ),
                Some(svc),
            ));
        } else if let Some(h) = svc.health {
            let status = match h {
                Health::Passing => PASSING,
                Health::Warning => WARNING,
                Health::Critical => CRITICAL,
            };
            let output = match svc.health_output.as_deref() {
                Some(o) if !o.is_empty() => o.to_string(),
                _ => format!("health reported by {}: {status}", m.name),
            };
            v.push(self.check(
                m,
                &format!("service:{}", svc.id),
                &format!("shoal: {}", svc.name),
                status,
                output,
                Some(svc),
            ));
        }
        if let Some(e) = self.ejected.get(&key) {
            // Critical, so that `?passing` and Consul clients leave the instance out.
            v.push(self.check(
                m,
                OUTLIER_CHECK,
                "shoal: ejected on local apps' reports",
                CRITICAL,
                format!("ejected by this agent's outlier detection: {}", e.reason),
                Some(svc),
            ));
        }
        v
    }

    /// Every (member, service) pair offering `name`, in member order.
    pub fn instances<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a MemberView, &'a ServiceView)> + 'a {
        self.members.iter().flat_map(move |m| {
            m.services
                .iter()
                .filter(move |s| s.name == name)
                .map(move |s| (m, s))
        })
    }

    pub fn health_entry(&self, m: &MemberView, svc: &ServiceView) -> HealthEntry {
        HealthEntry {
            node: self.node(m),
            service: self.service(m, svc),
            checks: self.checks(m, svc),
        }
    }

    pub fn catalog_service(&self, m: &MemberView, svc: &ServiceView) -> CatalogService {
        let n = self.node(m);
        let s = self.service(m, svc);
        CatalogService {
            id: n.id,
            node: n.node,
            address: n.address,
            datacenter: n.datacenter,
            tagged_addresses: n.tagged_addresses,
            node_meta: n.meta,
            service_id: s.id,
            service_name: s.service,
            service_address: s.address,
            service_tags: s.tags,
            service_meta: s.meta,
            service_port: s.port,
            service_weights: s.weights,
            service_enable_tag_override: false,
            create_index: 1,
            modify_index: self.index,
        }
    }

    /// `GET /v1/catalog/services`: every service name with the union of its tags.
    pub fn catalog_services(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for m in &self.members {
            for s in &m.services {
                out.entry(s.name.clone())
                    .or_default()
                    .extend(service_tags(s));
            }
        }
        out.into_iter()
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect()
    }

    pub fn catalog_node(&self, name: &str) -> Option<CatalogNode> {
        let m = self.members.iter().find(|m| m.name == name)?;
        Some(CatalogNode {
            node: self.node(m),
            services: m
                .services
                .iter()
                .map(|s| (s.id.clone(), self.service(m, s)))
                .collect(),
        })
    }

    pub fn agent_member(&self, m: &MemberView) -> AgentMember {
        let mut tags = m.tags.clone();
        tags.insert("dc".into(), self.datacenter.clone());
        tags.insert("role".into(), "node".into());
        AgentMember {
            name: m.name.clone(),
            addr: m.addr.ip().to_string(),
            port: m.addr.port(),
            tags,
            status: match m.status {
                ServedStatus::Alive
                | ServedStatus::Suspect
                | ServedStatus::Held
                | ServedStatus::Restarting => 1,
                ServedStatus::Left => 3,
                // Serf's "failed": not a member to send to.
                ServedStatus::Down | ServedStatus::Damped => 4,
            },
        }
    }
}

/// The aggregated status of some checks, as Consul computes it (critical > warning >
/// passing).
pub fn aggregated(checks: &[ConsulCheck]) -> &'static str {
    if checks.iter().any(|c| c.status == CRITICAL) {
        CRITICAL
    } else if checks.iter().any(|c| c.status == WARNING) {
        WARNING
    } else {
        PASSING
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_stable_and_uuid_shaped() {
        let a = node_id("web-1");
        assert_eq!(a, node_id("web-1"));
        assert_ne!(a, node_id("web-2"));
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12]);
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }

    #[test]
    fn tags_become_consul_tags() {
        let svc = Service {
            name: "web".into(),
            port: 80,
            tags: [("primary", ""), ("version", "2")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            health: None,
            health_output: None,
        };
        assert_eq!(service_tags(&svc), vec!["primary", "version=2"]);
    }
}
