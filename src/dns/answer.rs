//! The DNS zone (`shoal.` unless `dns_domain` names another, e.g. `consul.`): turns one
//! query message into one answer message, from a copy of the served view. Pure: no sockets,
//! no locks, no clock.
//!
//! Names (case-insensitive; `shoal` stands for the zone):
//! - `NAME.service.shoal` A/AAAA (the instances' IPs) and SRV (port, target
//!   `NODE.node.shoal`, whose A/AAAA goes in the additional section);
//! - `TAG.NAME.service.shoal`: only instances with the service tag `TAG` (a key, whatever its
//!   value, or `key=value`);
//! - `_NAME._tcp.service.shoal` (RFC 2782) SRV, and `_NAME._TAG.service.shoal`;
//! - `NODE.node.shoal` A/AAAA and TXT (its tags, one `key=value` string each);
//! - `shoal.` SOA.
//!
//! Instances come from the served view (`Node::services`: alive, suspect and `held`, with the
//! guard's per-service `fail_closed` rule); an instance whose owner reports it critical is
//! left out. Unknown names get NXDOMAIN, known names without records of the type asked get an
//! empty NOERROR, both with the zone's SOA; names outside the zone get REFUSED. It must not
//! decide what is served: that is the guard's.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use shoal_core::{Instance, MemberView};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The zone served by default.
pub const ZONE: &str = "shoal.";
/// Longest zone name (RFC 1035 leaves room under it for `NAME.service.` and `NODE.node.`).
pub const MAX_ZONE_LEN: usize = 128;

/// The zone answered: its labels, lowercase, and its name with the final dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    labels: Vec<String>,
    fqdn: String,
}

impl Default for Zone {
    fn default() -> Self {
        Zone {
            labels: vec!["shoal".into()],
            fqdn: ZONE.into(),
        }
    }
}

impl Zone {
    /// `consul`, `consul.` or `sd.example.com.`: one or more labels of letters, digits and
    /// `-` (not first or last), each at most 63 bytes, at most `MAX_ZONE_LEN` in all.
    pub fn parse(s: &str) -> Result<Zone, String> {
        let t = s.trim().trim_end_matches('.').to_ascii_lowercase();
        if t.is_empty() || t.len() > MAX_ZONE_LEN {
            return Err(format!(
                "{s:?} is not a DNS zone: 1 to {MAX_ZONE_LEN} bytes, like \"consul.\""
            ));
        }
        let labels: Vec<String> = t.split('.').map(str::to_string).collect();
        for l in &labels {
            let ok = !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                return Err(format!(
                    "{s:?} is not a DNS zone: label {l:?} must be 1 to 63 letters, digits \
                     or '-' (not first or last)"
                ));
            }
        }
        Ok(Zone {
            labels,
            fqdn: format!("{t}."),
        })
    }

    /// The zone's name with its final dot (`shoal.`).
    pub fn fqdn(&self) -> &str {
        &self.fqdn
    }
}
/// UDP answer size without EDNS (RFC 1035).
pub const UDP_PLAIN: usize = 512;
/// Largest UDP answer even when a client's EDNS offers more (the DNS flag day 2020 size:
/// keeps answers unfragmented and bounds what a spoofed query can make us send).
pub const UDP_EDNS_MAX: usize = 1232;

/// What the answers are built from: a copy of the served view taken under one lock.
#[derive(Clone, Debug, Default)]
pub struct DnsView {
    /// Members by name (every status; only serving ones are answered).
    pub members: BTreeMap<String, MemberView>,
    /// Served instances by service name.
    pub services: BTreeMap<String, Vec<Instance>>,
    /// The served view's index: the SOA serial.
    pub index: u64,
    /// The zone answered.
    pub zone: Zone,
    /// Estimated round trips from this agent in µs, by member name (network coordinates):
    /// service answers come nearest first, by `NEAR_BUCKET_US`.
    pub rtt_us: BTreeMap<String, u64>,
}

/// Service answers are ordered nearest first at this granularity (1 ms); within one step they
/// stay rotated by the query id, so equally near instances share the load.
pub const NEAR_BUCKET_US: u64 = 1_000;

/// What a query name asks for.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Apex,
    Service { name: String, tag: Option<String> },
    Node(String),
}

fn label(l: &[u8]) -> Option<String> {
    std::str::from_utf8(l).ok().map(|s| s.to_ascii_lowercase())
}

/// Parses a query name relative to `zone`; `None` when outside the zone.
fn target(qname: &Name, zone: &Zone) -> Option<Option<Target>> {
    let labels: Vec<String> = qname.iter().map(label).collect::<Option<Vec<_>>>()?;
    let rest = labels.strip_suffix(zone.labels.as_slice())?;
    let t = match rest {
        [] => Some(Target::Apex),
        [node, kind] if kind == "node" => Some(Target::Node(node.clone())),
        [a, b, kind] if kind == "service" && a.starts_with('_') && b.starts_with('_') => {
            let name = a[1..].to_string();
            let proto = &b[1..];
            let tag = (proto != "tcp" && proto != "udp").then(|| proto.to_string());
            Some(Target::Service { name, tag })
        }
        [name, kind] if kind == "service" => Some(Target::Service {
            name: name.clone(),
            tag: None,
        }),
        [tag, name, kind] if kind == "service" => Some(Target::Service {
            name: name.clone(),
            tag: Some(tag.clone()),
        }),
        _ => None,
    };
    Some(t)
}

fn has_tag(i: &Instance, tag: &str) -> bool {
    i.tags
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case(tag) || format!("{k}={v}").eq_ignore_ascii_case(tag))
}

fn addr_record(name: Name, ttl: u32, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::from_rdata(name, ttl, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(name, ttl, RData::AAAA(AAAA(v6))),
    }
}

fn wants_addr(qtype: RecordType, ip: IpAddr) -> bool {
    match qtype {
        RecordType::A => ip.is_ipv4(),
        RecordType::AAAA => ip.is_ipv6(),
        RecordType::ANY => true,
        _ => false,
    }
}

fn node_name(node: &str, zone: &Zone) -> Option<Name> {
    Name::from_ascii(format!("{node}.node.{}", zone.fqdn)).ok()
}

impl DnsView {
    fn soa(&self, ttl: u32) -> Option<Record> {
        let z = &self.zone.fqdn;
        let zone = Name::from_ascii(z).ok()?;
        let soa = SOA::new(
            Name::from_ascii(format!("ns.{z}")).ok()?,
            Name::from_ascii(format!("hostmaster.{z}")).ok()?,
            (self.index & 0xffff_ffff) as u32,
            3600,
            600,
            86400,
            ttl,
        );
        Some(Record::from_rdata(zone, ttl, RData::SOA(soa)))
    }

    /// A serving member by (lower-case) name.
    fn serving_node(&self, name: &str) -> Option<&MemberView> {
        self.members
            .values()
            .find(|m| m.name.eq_ignore_ascii_case(name) && m.status.is_serving())
    }

    fn instances(&self, name: &str, tag: Option<&str>) -> Option<Vec<&Instance>> {
        let (_, v) = self
            .services
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))?;
        Some(
            v.iter()
                .filter(|i| i.in_passing_view(true))
                .filter(|i| tag.map(|t| has_tag(i, t)).unwrap_or(true))
                .collect(),
        )
    }

    /// The answer to `req` (any request: errors come back as DNS error codes).
    pub fn answer(&self, req: &Message, ttl: u32) -> Message {
        let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
        resp.metadata.recursion_desired = req.metadata.recursion_desired;
        resp.metadata.authoritative = true;
        if req.edns.is_some() {
            let mut e = Edns::new();
            e.set_max_payload(UDP_EDNS_MAX as u16);
            resp.set_edns(e);
        }
        if req.metadata.message_type != MessageType::Query {
            resp.metadata.response_code = ResponseCode::FormErr;
            return resp;
        }
        if req.metadata.op_code != OpCode::Query {
            resp.metadata.response_code = ResponseCode::NotImp;
            return resp;
        }
        let [q] = req.queries.as_slice() else {
            resp.metadata.response_code = ResponseCode::FormErr;
            return resp;
        };
        resp.add_query(q.clone());
        if q.query_class() != DNSClass::IN && q.query_class() != DNSClass::ANY {
            resp.metadata.response_code = ResponseCode::Refused;
            return resp;
        }
        let Some(t) = target(q.name(), &self.zone) else {
            resp.metadata.authoritative = false;
            resp.metadata.response_code = ResponseCode::Refused;
            return resp;
        };
        let found = match t {
            None => false,
            Some(t) => self.fill(&mut resp, q, &t, ttl, req.metadata.id),
        };
        if !found {
            resp.metadata.response_code = ResponseCode::NXDomain;
        }
        if resp.answers.is_empty() {
            if let Some(soa) = self.soa(ttl) {
                resp.add_authority(soa);
            }
        }
        resp
    }

    /// Adds the records for `t`; returns whether the name exists.
    fn fill(&self, resp: &mut Message, q: &Query, t: &Target, ttl: u32, id: u16) -> bool {
        let qname = q.name().clone();
        let qtype = q.query_type();
        match t {
            Target::Apex => {
                if matches!(qtype, RecordType::SOA | RecordType::ANY) {
                    if let Some(soa) = self.soa(ttl) {
                        resp.add_answer(soa);
                    }
                }
                true
            }
            Target::Node(name) => {
                let Some(m) = self.serving_node(name) else {
                    return false;
                };
                let ip = m.addr.ip();
                if wants_addr(qtype, ip) {
                    resp.add_answer(addr_record(qname.clone(), ttl, ip));
                }
                if matches!(qtype, RecordType::TXT | RecordType::ANY) && !m.tags.is_empty() {
                    let txt = TXT::new(m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect());
                    resp.add_answer(Record::from_rdata(qname, ttl, RData::TXT(txt)));
                }
                true
            }
            Target::Service { name, tag } => {
                let Some(mut insts) = self.instances(name, tag.as_deref()) else {
                    return false;
                };
                if insts.is_empty() {
                    // Nothing served under this name (or tag): as Consul does, NXDOMAIN.
                    return false;
                }
                // Spread the load: rotate by the query id (deterministic for one query).
                let n = insts.len();
                insts.rotate_left(usize::from(id) % n);
                // Nearest first (a stable sort keeps the rotation within a step); members
                // without a coordinate yet go last.
                insts.sort_by_key(|i| {
                    self.rtt_us
                        .get(&i.node)
                        .map_or(u64::MAX, |r| r / NEAR_BUCKET_US)
                });
                match qtype {
                    RecordType::SRV => {
                        let mut extra: Vec<Record> = Vec::new();
                        for i in insts {
                            let Some(target) = node_name(&i.node, &self.zone) else {
                                continue;
                            };
                            let srv = SRV::new(1, 1, i.port, target.clone());
                            resp.add_answer(Record::from_rdata(
                                qname.clone(),
                                ttl,
                                RData::SRV(srv),
                            ));
                            let rec = addr_record(target, ttl, i.addr.ip());
                            if !extra.contains(&rec) {
                                extra.push(rec);
                            }
                        }
                        resp.add_additionals(extra);
                    }
                    _ => {
                        let mut seen: Vec<IpAddr> = Vec::new();
                        for i in insts {
                            let ip = i.addr.ip();
                            if wants_addr(qtype, ip) && !seen.contains(&ip) {
                                seen.push(ip);
                                resp.add_answer(addr_record(qname.clone(), ttl, ip));
                            }
                        }
                    }
                }
                true
            }
        }
    }
}

/// Encodes `resp` for UDP: when it is larger than the client can take (512 bytes, or its EDNS
/// size up to `UDP_EDNS_MAX`), the records are dropped and the TC bit set, so that the client
/// asks again over TCP. `None` if the message cannot be encoded.
pub fn encode_udp(req: &Message, resp: &Message) -> Option<Vec<u8>> {
    let limit = match &req.edns {
        Some(e) => usize::from(e.max_payload()).clamp(UDP_PLAIN, UDP_EDNS_MAX),
        None => UDP_PLAIN,
    };
    let bytes = resp.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    resp.truncate().to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<Option<Target>> {
        target(&Name::from_ascii(s).unwrap(), &Zone::default())
    }

    #[test]
    fn another_zone() {
        let z = Zone::parse("Consul").unwrap();
        assert_eq!(z.fqdn(), "consul.");
        let q = |s: &str| target(&Name::from_ascii(s).unwrap(), &z);
        assert_eq!(q("consul."), Some(Some(Target::Apex)));
        assert_eq!(q("n1.node.consul."), Some(Some(Target::Node("n1".into()))));
        assert_eq!(q("n1.node.shoal."), None);
        let deep = Zone::parse("sd.example.com.").unwrap();
        assert_eq!(
            target(
                &Name::from_ascii("web.service.sd.example.com.").unwrap(),
                &deep
            ),
            Some(Some(Target::Service {
                name: "web".into(),
                tag: None
            }))
        );
        assert_eq!(
            target(
                &Name::from_ascii("web.service.example.com.").unwrap(),
                &deep
            ),
            None
        );
        for bad in [
            "",
            ".",
            "a..b",
            "-a",
            "a b",
            &"x".repeat(64),
            &"a.".repeat(70),
        ] {
            assert!(Zone::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_of_the_zone() {
        assert_eq!(t("shoal."), Some(Some(Target::Apex)));
        assert_eq!(
            t("WEB.service.shoal."),
            Some(Some(Target::Service {
                name: "web".into(),
                tag: None
            }))
        );
        assert_eq!(
            t("primary.db.service.shoal."),
            Some(Some(Target::Service {
                name: "db".into(),
                tag: Some("primary".into())
            }))
        );
        assert_eq!(
            t("_web._tcp.service.shoal."),
            Some(Some(Target::Service {
                name: "web".into(),
                tag: None
            }))
        );
        assert_eq!(
            t("_db._primary.service.shoal."),
            Some(Some(Target::Service {
                name: "db".into(),
                tag: Some("primary".into())
            }))
        );
        assert_eq!(t("n1.node.shoal."), Some(Some(Target::Node("n1".into()))));
        assert_eq!(t("what.ever.shoal."), Some(None));
        assert_eq!(t("example.com."), None);
    }
}
