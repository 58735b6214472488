//! What SWIM currently believes, and the shapes the served view is expressed in.
//!
//! Owns `Truth` (every known member by name with its SWIM state and since when) and `MemberView` / `Instance` (the JSON shapes apps receive). It records what foca
//! and the metadata say; it must not filter anything: that is the guard's job. The status words
//! (`TruthState`, `ServedStatus`) are in `core::status`, below it, and re-exported here.

use crate::identity::NodeId;
use crate::meta::{Health, MetaRecord, Service};
use crate::names::{NameTable, Named};
pub use crate::status::{ServedStatus, TruthState};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

/// One member as this node's truth holds it: 24 bytes (a node holds one per member, so at
/// 10,000 simulated nodes of 10,000 members each byte is 100 MB). Its state, the time it
/// entered it and what was last served for it share one word.
#[derive(Clone, PartialEq, Eq)]
pub struct TruthMember {
    pub id: NodeId,
    /// `since` in the low 48 bits (milliseconds: 8,900 years), `state` in the next byte,
    /// `served` in the top byte (0: nothing yet).
    word: u64,
}

const SINCE_BITS: u32 = 48;
const SINCE_MASK: u64 = (1 << SINCE_BITS) - 1;

impl TruthMember {
    pub fn new(id: NodeId, state: TruthState, since: Time, served: Option<ServedStatus>) -> Self {
        let mut m = TruthMember { id, word: 0 };
        m.set_state(state, since);
        m.set_served(served);
        m
    }

    pub fn state(&self) -> TruthState {
        match (self.word >> SINCE_BITS) as u8 {
            0 => TruthState::Alive,
            1 => TruthState::Suspect,
            2 => TruthState::Down,
            _ => TruthState::Left,
        }
    }

    /// When `state` was entered.
    pub fn since(&self) -> Time {
        Time(self.word & SINCE_MASK)
    }

    /// What this node last served for the member (`None`: nothing yet); kept here rather
    /// than in a map of its own so that a member costs one entry.
    pub fn served(&self) -> Option<ServedStatus> {
        Some(match (self.word >> 56) as u8 {
            0 => return None,
            1 => ServedStatus::Alive,
            2 => ServedStatus::Suspect,
            3 => ServedStatus::Held,
            4 => ServedStatus::Left,
            5 => ServedStatus::Down,
            6 => ServedStatus::Restarting,
            _ => ServedStatus::Damped,
        })
    }

    fn set_state(&mut self, state: TruthState, since: Time) {
        let code: u64 = match state {
            TruthState::Alive => 0,
            TruthState::Suspect => 1,
            TruthState::Down => 2,
            TruthState::Left => 3,
        };
        // A time past 8,900 years from the driver's epoch is held at the largest one.
        let since = since.0.min(SINCE_MASK);
        self.word = (self.word & (0xFF << 56)) | (code << SINCE_BITS) | since;
    }

    fn set_served(&mut self, served: Option<ServedStatus>) {
        let code: u64 = match served {
            None => 0,
            Some(ServedStatus::Alive) => 1,
            Some(ServedStatus::Suspect) => 2,
            Some(ServedStatus::Held) => 3,
            Some(ServedStatus::Left) => 4,
            Some(ServedStatus::Down) => 5,
            Some(ServedStatus::Restarting) => 6,
            Some(ServedStatus::Damped) => 7,
        };
        self.word = (self.word & !(0xFF << 56)) | (code << 56);
    }
}

impl std::fmt::Debug for TruthMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TruthMember")
            .field("id", &self.id)
            .field("state", &self.state())
            .field("since", &self.since())
            .field("served", &self.served())
            .finish()
    }
}

impl Named for TruthMember {
    fn name(&self) -> &Arc<str> {
        self.id.name()
    }
}

/// Every member this node knows, by name, including itself.
///
/// A hash map: in a cluster of thousands, an ordered map's lookups compare names through
/// a pointer at every level (a cache miss each), and lookups happen for every update
/// received. Iteration order is the map's: deterministic for a given seed (`with_seed`), so
/// the simulator replays exactly; callers that show members sort them.
#[derive(Clone, Debug, Default)]
pub struct Truth {
    members: NameTable<TruthMember>,
    /// Names whose state is `Suspect` (kept apart so that refreshing them is cheap).
    suspects: BTreeSet<Arc<str>>,
    /// The member at each address (the last one set there): sealing to the member a datagram
    /// goes to, per destination, must not scan every member. Kept only by a node that seals
    /// (`index_addresses`, called when it gets member keys, before it starts): a node without
    /// keys never asks, and at 10,000 members the index costs 280 KB a node.
    by_addr: Option<AddrIndex>,
    /// The seed of the tables (the address index is made later, hashed with it too).
    seed: u64,
}

/// The member set last at each address, as the identity it was set with (16 bytes: its name
/// and address are behind the identity's shared pointer). A map from a `SocketAddr` (32
/// bytes) to a name (16) cost 49 bytes a bucket: with 10,000 simulated nodes of 10,000
/// members, 8 GB. Only looked up, never iterated, so its order reaches no output.
#[derive(Clone, Default)]
struct AddrIndex {
    table: hashbrown::HashTable<NodeId>,
    hasher: foldhash::fast::FixedState,
}

impl std::fmt::Debug for AddrIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.table.iter().map(|id| (id.addr(), id.name())))
            .finish()
    }
}

impl AddrIndex {
    fn with_seed(seed: crate::hash::HashSeed) -> AddrIndex {
        AddrIndex {
            table: hashbrown::HashTable::new(),
            hasher: seed.state(),
        }
    }

    fn hash(&self, addr: SocketAddr) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(addr)
    }

    /// The name of the member set last at `addr`.
    fn get(&self, addr: SocketAddr) -> Option<&Arc<str>> {
        self.table
            .find(self.hash(addr), |id| id.addr() == addr)
            .map(|id| id.name())
    }

    /// Points `id`'s address at it.
    fn insert(&mut self, id: &NodeId) {
        use std::hash::BuildHasher;
        let addr = id.addr();
        let hasher = &self.hasher;
        match self.table.entry(
            self.hash(addr),
            |v| v.addr() == addr,
            |v| hasher.hash_one(v.addr()),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut e) => *e.get_mut() = id.clone(),
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(id.clone());
            }
        }
    }

    fn remove(&mut self, addr: SocketAddr) {
        if let Ok(e) = self
            .table
            .find_entry(self.hash(addr), |id| id.addr() == addr)
        {
            e.remove();
        }
    }
}

impl Truth {
    /// An empty truth whose iteration order follows `seed` (a random seed in the agent keeps
    /// peers from choosing names that collide).
    pub fn with_seed(seed: u64) -> Truth {
        Truth {
            members: NameTable::with_seed(seed),
            suspects: BTreeSet::new(),
            by_addr: None,
            seed,
        }
    }

    /// Keeps the index of members by address from now on (what `at_addr` reads), indexing the
    /// members known so far in the truth's order. Called when the node gets member keys,
    /// before it starts, so with an empty truth: the index then is what it would have been
    /// had it been kept from the first member on.
    pub fn index_addresses(&mut self) {
        if self.by_addr.is_some() {
            return;
        }
        self.by_addr = Some(AddrIndex::with_seed(crate::hash::HashSeed::of_node(
            self.seed,
        )));
        let ids: Vec<(NodeId, TruthState)> = self
            .members
            .iter()
            .map(|m| (m.id.clone(), m.state()))
            .collect();
        for (id, state) in ids {
            self.index(&id, state);
        }
    }

    /// The member at `addr` (the one set there last, if it still is there); `None` unless
    /// the node keeps the index (`index_addresses`).
    pub fn at_addr(&self, addr: SocketAddr) -> Option<&TruthMember> {
        let name = self.by_addr.as_ref()?.get(addr)?;
        self.members.get(name).filter(|m| m.id.addr() == addr)
    }

    pub fn get(&self, name: &str) -> Option<&TruthMember> {
        self.members.get(name)
    }

    /// Makes room for `additional` more members at once.
    pub fn reserve(&mut self, additional: usize) {
        self.members.reserve(additional);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &TruthMember)> {
        self.members.iter().map(|m| (m.id.name(), m))
    }

    /// Every member name once, starting at position `start` of the iteration order and
    /// wrapping around (positions move as members come and go: good enough to rotate over
    /// the names, not to resume at an exact one).
    pub fn names_rotated(&self, start: usize) -> impl Iterator<Item = &Arc<str>> {
        let start = if self.members.is_empty() {
            0
        } else {
            start % self.members.len()
        };
        self.members
            .iter()
            .skip(start)
            .chain(self.members.iter().take(start))
            .map(|m| m.id.name())
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn suspects(&self) -> impl Iterator<Item = &Arc<str>> {
        self.suspects.iter()
    }

    /// Number of members in an active state (alive or suspect).
    pub fn active_count(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.state().is_active())
            .count()
    }

    /// Sets a member's identity and state. Returns the previous state if it changed (or
    /// `None` for a new member), and `Some(Some(x))`-style distinction through the tuple:
    /// `(changed, previous)`.
    pub fn set(&mut self, now: Time, id: &NodeId, state: TruthState) -> (bool, Option<TruthState>) {
        match self.members.get_mut(id.name().as_ref()) {
            Some(m) => {
                let prev = m.state();
                let id_changed = m.id != *id;
                if id_changed {
                    let old = m.id.addr();
                    if let Some(by_addr) = self.by_addr.as_mut() {
                        if old != id.addr() && by_addr.get(old).is_some_and(|n| n == id.name()) {
                            by_addr.remove(old);
                        }
                    }
                    m.id = id.clone();
                }
                if prev != state {
                    m.set_state(state, now);
                    if state == TruthState::Suspect {
                        self.suspects.insert(id.name().clone());
                    } else {
                        self.suspects.remove(id.name().as_ref());
                    }
                }
                self.index(id, state);
                (prev != state || id_changed, Some(prev))
            }
            None => {
                self.members
                    .insert(TruthMember::new(id.clone(), state, now, None));
                if state == TruthState::Suspect {
                    self.suspects.insert(id.name().clone());
                }
                self.index(id, state);
                (true, None)
            }
        }
    }

    /// Points `id`'s address at it, unless another member still active there holds it and
    /// `id` is not active (a member that restarted under a new name at the same address
    /// keeps it when news of the old name comes late).
    fn index(&mut self, id: &NodeId, state: TruthState) {
        let Some(by_addr) = self.by_addr.as_mut() else {
            return;
        };
        let other_active = by_addr.get(id.addr()).is_some_and(|n| {
            n != id.name()
                && self
                    .members
                    .get(n)
                    .is_some_and(|m| m.state().is_active() && m.id.addr() == id.addr())
        });
        if state.is_active() || !other_active {
            by_addr.insert(id);
        }
    }

    /// Records what is served for a known member; returns the previous value, or `None` when
    /// the member is unknown (nothing recorded).
    pub fn swap_served(
        &mut self,
        name: &str,
        status: ServedStatus,
    ) -> Option<Option<ServedStatus>> {
        self.members.get_mut(name).map(|m| {
            let prev = m.served();
            m.set_served(Some(status));
            prev
        })
    }

    pub fn remove(&mut self, name: &str) -> Option<TruthMember> {
        self.suspects.remove(name);
        let m = self.members.remove(name)?;
        if let Some(by_addr) = self.by_addr.as_mut() {
            if by_addr.get(m.id.addr()).is_some_and(|n| **n == *name) {
                by_addr.remove(m.id.addr());
            }
        }
        Some(m)
    }
}

/// One instance of a service: which member offers it, where, and with what status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The member offering it.
    pub node: String,
    /// The instance id, unique on its node (the service's name unless it was given one).
    #[serde(default)]
    pub id: String,
    /// The member's advertised IP with the service port.
    pub addr: SocketAddr,
    /// The service port.
    pub port: u16,
    /// The member's served status.
    pub status: ServedStatus,
    #[serde(default)]
    /// The service's tags.
    pub tags: BTreeMap<String, String>,
    /// The owner's health of this instance (`passing` when it reports none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// The first line of the output of the check behind `health` ("" when none).
    #[serde(default)]
    pub health_output: String,
    /// Set when the health guard serves this critical instance as `held` (in the passing
    /// view): why, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_held: Option<String>,
    /// Set while this agent ejects the instance on its apps' reports (`core::outlier`): out
    /// of the passing view until `until_ms`, with why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ejected: Option<crate::outlier::Ejection>,
}

impl Instance {
    /// The instance's health (an instance whose owner reports none is passing).
    pub fn health(&self) -> Health {
        self.health.unwrap_or(Health::Passing)
    }

    /// Whether the passing view (`?passing`, Consul's `passing`, DNS) keeps this instance:
    /// not ejected, and passing or critical and held by the health guard. `warning_ok`:
    /// warning counts too (DNS, as Consul's DNS interface).
    pub fn in_passing_view(&self, warning_ok: bool) -> bool {
        self.ejected.is_none() && self.health_passes(warning_ok)
    }

    /// `in_passing_view` but for ejection: what its health alone says.
    pub fn health_passes(&self, warning_ok: bool) -> bool {
        match self.health() {
            Health::Passing => true,
            Health::Warning => warning_ok,
            Health::Critical => self.health_held.is_some(),
        }
    }
}

/// A member as served to apps (the JSON shape of `/v1/members` items).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// The member's name.
    pub name: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Its served status.
    pub status: ServedStatus,
    /// What SWIM believes, when it differs from `status` (e.g. `down` for a `held` member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth: Option<TruthState>,
    /// Its generation.
    pub generation: u64,
    /// Milliseconds (driver time) since the member entered its current SWIM state.
    pub since_ms: u64,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Its service instances, by id.
    pub services: Vec<ServiceView>,
    /// Metadata version as last seen (0 when none was received yet).
    pub meta_version: u64,
    /// Why the member entered its status (absent when this node saw no transition of it,
    /// e.g. a member restored from a snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<crate::cause::Cause>,
    /// The protocol range the member announced in its record (`wire::ProtocolRange`; a
    /// v0.1.0 agent's record announces none: 1..1), absent until a record was received
    /// (docs/upgrades.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<crate::wire::ProtocolRange>,
    /// Its flap-damping penalty, while it has one (`core::damping`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damping: Option<crate::damping::DampingView>,
    /// Why it is served down although SWIM calls it alive: several observers cannot reach
    /// it (`core::gray`), e.g. "gray: 6 of 8 observers cannot reach it".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gray: Option<String>,
}

/// A service instance of a member as the API shows it: its id beside the service's fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawServiceView")]
pub struct ServiceView {
    /// The instance id, unique on its node (the service's name unless it was given one).
    pub id: String,
    #[serde(flatten)]
    /// The service.
    pub service: Service,
}

/// A `ServiceView` as read: written before instance ids (a snapshot, an older agent's
/// answer), it has none, and its id is its name.
#[derive(Deserialize)]
struct RawServiceView {
    #[serde(default)]
    id: String,
    #[serde(flatten)]
    service: Service,
}

impl From<RawServiceView> for ServiceView {
    fn from(r: RawServiceView) -> Self {
        ServiceView {
            id: if r.id.is_empty() {
                r.service.name.clone()
            } else {
                r.id
            },
            service: r.service,
        }
    }
}

impl std::ops::Deref for ServiceView {
    type Target = Service;
    fn deref(&self) -> &Service {
        &self.service
    }
}

impl MemberView {
    /// The view of `m`, served as `status`, with its metadata.
    pub fn build(m: &TruthMember, status: ServedStatus, meta: Option<&MetaRecord>) -> Self {
        let served_as_truth = matches!(
            (status, m.state()),
            (ServedStatus::Alive, TruthState::Alive)
                | (ServedStatus::Suspect, TruthState::Suspect)
                | (ServedStatus::Down, TruthState::Down)
                | (ServedStatus::Left, TruthState::Left)
        );
        // A record of the member's current life counts; while it is served (alive, restarting
        // ...), so does the record of a newer life: a restarted member's record may arrive
        // before SWIM hears of its new life, and it is the member's latest word.
        let meta = meta.filter(|r| r.generation <= m.id.generation() || status.is_serving());
        MemberView {
            name: m.id.name().to_string(),
            addr: m.id.addr(),
            status,
            truth: if served_as_truth {
                None
            } else {
                Some(m.state())
            },
            generation: m.id.generation(),
            since_ms: m.since().as_millis(),
            tags: meta.map(|r| r.meta.tags.clone()).unwrap_or_default(),
            services: meta
                .map(|r| {
                    r.meta
                        .services
                        .iter()
                        .map(|(id, s)| ServiceView {
                            id: id.clone(),
                            service: s.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            meta_version: meta.map(|r| r.version).unwrap_or(0),
            cause: None,
            protocol: meta.map(|r| r.protocol()),
            damping: None,
            gray: None,
        }
    }

    /// The service instances this member offers.
    pub fn instances(&self) -> impl Iterator<Item = Instance> + '_ {
        self.services.iter().map(|s| Instance {
            node: self.name.clone(),
            id: s.id.clone(),
            addr: SocketAddr::new(self.addr.ip(), s.port),
            port: s.port,
            status: self.status,
            tags: s.tags.clone(),
            health: Some(s.health.unwrap_or(Health::Passing)),
            health_output: s.health_output.clone().unwrap_or_default(),
            health_held: None,
            ejected: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_without_an_id_has_its_name_as_id() {
        let old: ServiceView = serde_json::from_str(r#"{"name":"web","port":80}"#).unwrap();
        assert_eq!(old.id, "web");
        let new: ServiceView =
            serde_json::from_str(r#"{"id":"web-2","name":"web","port":81}"#).unwrap();
        assert_eq!((new.id.as_str(), new.port), ("web-2", 81));
        assert_eq!(
            serde_json::from_str::<ServiceView>(&serde_json::to_string(&new).unwrap()).unwrap(),
            new
        );
    }

    #[test]
    fn set_reports_changes() {
        let mut t = Truth::default();
        let id = NodeId::new("a", "127.0.0.1:1".parse().unwrap(), 1);
        assert_eq!(t.set(Time(1), &id, TruthState::Alive), (true, None));
        assert_eq!(
            t.set(Time(2), &id, TruthState::Alive),
            (false, Some(TruthState::Alive))
        );
        assert_eq!(
            t.set(Time(3), &id, TruthState::Suspect),
            (true, Some(TruthState::Alive))
        );
        assert_eq!(t.suspects().count(), 1);
        assert_eq!(t.get("a").unwrap().since(), Time(3));
        t.set(Time(4), &id, TruthState::Down);
        assert_eq!(t.suspects().count(), 0);
        assert_eq!(t.active_count(), 0);
    }

    #[test]
    fn the_member_at_an_address() {
        let mut t = Truth::default();
        t.index_addresses();
        let at = |p: u16| -> SocketAddr { SocketAddr::from(([127, 0, 0, 1], p)) };
        let a = NodeId::new("a", at(1), 1);
        t.set(Time(1), &a, TruthState::Alive);
        assert_eq!(t.at_addr(at(1)).map(|m| &**m.id.name()), Some("a"));
        // Moved to another address: found there, not at the old one.
        let a2 = NodeId::new("a", at(2), 2);
        t.set(Time(2), &a2, TruthState::Alive);
        assert!(t.at_addr(at(1)).is_none());
        assert_eq!(t.at_addr(at(2)).map(|m| &**m.id.name()), Some("a"));
        // Another name restarted at that address: it holds it, even when news of the old
        // name's end comes after.
        let b = NodeId::new("b", at(2), 3);
        t.set(Time(3), &b, TruthState::Alive);
        t.set(Time(4), &a2, TruthState::Down);
        assert_eq!(t.at_addr(at(2)).map(|m| &**m.id.name()), Some("b"));
        t.remove("a");
        assert_eq!(t.at_addr(at(2)).map(|m| &**m.id.name()), Some("b"));
        t.remove("b");
        assert!(t.at_addr(at(2)).is_none());
    }

    #[test]
    fn addresses_are_indexed_only_when_asked() {
        let at = |p: u16| -> SocketAddr { SocketAddr::from(([127, 0, 0, 1], p)) };
        let mut t = Truth::with_seed(5);
        t.set(Time(1), &NodeId::new("a", at(1), 1), TruthState::Alive);
        t.set(Time(1), &NodeId::new("b", at(2), 1), TruthState::Down);
        assert!(t.at_addr(at(1)).is_none(), "no index kept");
        // Turned on later, it indexes the members known so far.
        t.index_addresses();
        assert_eq!(t.at_addr(at(1)).map(|m| &**m.id.name()), Some("a"));
        assert_eq!(t.at_addr(at(2)).map(|m| &**m.id.name()), Some("b"));
        t.remove("a");
        assert!(t.at_addr(at(1)).is_none());
    }

    #[test]
    fn a_member_is_24_bytes_and_keeps_its_words() {
        assert_eq!(std::mem::size_of::<TruthMember>(), 24);
        let id = NodeId::new("a", "127.0.0.1:1".parse().unwrap(), 1);
        let states = [
            TruthState::Alive,
            TruthState::Suspect,
            TruthState::Down,
            TruthState::Left,
        ];
        let served = [
            None,
            Some(ServedStatus::Alive),
            Some(ServedStatus::Suspect),
            Some(ServedStatus::Held),
            Some(ServedStatus::Left),
            Some(ServedStatus::Down),
            Some(ServedStatus::Restarting),
            Some(ServedStatus::Damped),
        ];
        for st in states {
            for sv in served {
                for at in [0, 1, 123_456_789, SINCE_MASK] {
                    let mut m = TruthMember::new(id.clone(), st, Time(at), sv);
                    assert_eq!((m.state(), m.since(), m.served()), (st, Time(at), sv));
                    m.set_served(Some(ServedStatus::Held));
                    assert_eq!((m.state(), m.since()), (st, Time(at)));
                    m.set_state(TruthState::Down, Time(7));
                    assert_eq!(m.served(), Some(ServedStatus::Held));
                }
            }
        }
        let far = TruthMember::new(id, TruthState::Alive, Time(u64::MAX), None);
        assert_eq!(
            (far.state(), far.since()),
            (TruthState::Alive, Time(SINCE_MASK))
        );
    }
}
