//! Building a node: `Node::new` and `Node::with_shared` check the configuration and the
//! name, seed foca, the trust layer and every table from `seed`, and set up the node's
//! parts (nothing is sent until `Node::start`).
//!
//! A child module of `node` (it fills the node's fields). Must not read a clock or draw OS
//! randomness: time and the seed come from the driver.

use super::trust::session_seed;
use super::{
    coords, trust, Node, NodeConfig, NodeError, Outbox, Stats, DISCOVERY_PER_ADDR,
    DISCOVERY_WINDOW, MAX_BACKLOG, RECORD_SHARE, SEED_MIX, WANT_ANSWERS_PER_SEC,
};
use crate::due::{DueQueue, DueSet};
use crate::guard::{Guard, GuardState};
use crate::hash::HashSeed;
use crate::identity::validate_name;
use crate::meta::{MetaRecord, NodeMeta};
use crate::meta_gossip::MetaBroadcasts;
use crate::meta_store::MetaStore;
use crate::reach::Reach;
use crate::time::Time;
use crate::timers::{TimerQueue, TimerTable};
use crate::trust::{Trust, TrustConfig};
use crate::truth::{Truth, TruthState};
use crate::wire::{self, MAX_DATAGRAM, MAX_LABEL_LEN};
use foca::Foca;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

impl Node {
    /// Creates a node. `generation` must grow across restarts of the same name (the agent
    /// uses its start time in ms); `seed` drives every random choice. The node shares its
    /// caches with nobody (a context of its own, hashed from `seed`).
    pub fn new(
        cfg: NodeConfig,
        generation: u64,
        meta: NodeMeta,
        seed: u64,
        now: Time,
    ) -> Result<Self, NodeError> {
        let shared = crate::shared::Shared::new(seed);
        Self::with_shared(cfg, generation, meta, seed, now, shared)
    }

    /// Creates a node (see `new`) that shares names, identities and records with every
    /// node built with `shared` (the simulator builds all its nodes with one context).
    pub fn with_shared(
        cfg: NodeConfig,
        generation: u64,
        meta: NodeMeta,
        seed: u64,
        now: Time,
        shared: Arc<crate::shared::Shared>,
    ) -> Result<Self, NodeError> {
        validate_name(&cfg.name).map_err(NodeError::BadName)?;
        if cfg.cluster_label.len() > MAX_LABEL_LEN {
            return Err(NodeError::BadLabel(cfg.cluster_label.len()));
        }
        cfg.timings.validate().map_err(NodeError::BadTimings)?;
        cfg.guard.validate().map_err(NodeError::BadGuard)?;
        cfg.outlier.validate().map_err(NodeError::BadOutlier)?;
        cfg.fleet.validate().map_err(NodeError::BadTimings)?;
        meta.validate()?;
        let hashes = HashSeed::of_node(seed);
        let id = shared.id(&cfg.name, cfg.advertise, generation);
        let store = MetaStore::with_seed(seed ^ SEED_MIX.rotate_left(29));
        let accusations = crate::lifeguard::Inbox::with_seed(
            hashes,
            crate::lifeguard::settings(&cfg.timings)
                .suspicion_permille
                .len(),
        );
        let max_packet = MAX_DATAGRAM - wire::overhead(&cfg.cluster_label);
        let mut foca = Foca::with_custom_broadcast(
            id.clone(),
            cfg.timings.foca_config(1, max_packet),
            SmallRng::seed_from_u64(seed),
            crate::codec::SwimCodec::new(shared.clone()),
            MetaBroadcasts {
                shared: shared.clone(),
                max_generation: u64::MAX,
                store,
                own: id.name().clone(),
                accusations,
                unknown: 0,
                about_us: None,
            },
        );
        foca.set_lifeguard(crate::lifeguard::settings_for(&cfg.timings));
        foca.set_backlog_limit(MAX_BACKLOG);
        foca.set_custom_broadcast_share(RECORD_SHARE);
        foca.set_max_members(trust::DEFAULT_MAX_MEMBERS);
        foca.set_probe_marks(true);
        let mut own = MetaRecord {
            name: id.name().clone(),
            addr: id.addr(),
            generation,
            version: 1,
            leaving: false,
            meta: NodeMeta::default(),
            ext: Default::default(),
        };
        own.set_meta(meta);
        // Every peer learns what this agent speaks from its record (docs/upgrades.md).
        crate::fields::record::PROTOCOL.set(&mut own.ext, &crate::wire::PROTOCOL);
        let mut truth = Truth::with_seed(seed ^ SEED_MIX.rotate_left(17));
        truth.set(now, &id, TruthState::Alive);
        let guard = Guard::new(cfg.guard.clone(), now, hashes);
        let health = crate::health_guard::HealthGuard::new(cfg.guard.clone());
        let outliers = crate::outlier::Outliers::new(cfg.outlier.clone());
        let seeds = cfg.seeds.clone();
        let rejoin_backoff = cfg.timings.rejoin_min;
        Ok(Node {
            foca,
            rng: SmallRng::seed_from_u64(seed ^ SEED_MIX),
            hashes,
            shared,
            truth,
            guard,
            health,
            health_rate: Default::default(),
            checks: Default::default(),
            outliers,
            served_ghosts: hashes.map(),
            own,
            member_keys: None,
            pairs: Default::default(),
            out: Outbox::default(),
            timers: TimerQueue::new(),
            named: TimerTable::default(),
            events: VecDeque::new(),
            index: 0,
            stats: Stats::default(),
            now,
            started: false,
            adopting: false,
            left: false,
            ending: None,
            leave_finished: false,
            idle: true,
            seeds,
            next_rejoin: None,
            reconnecting: false,
            gossip_now: false,
            refute_pending: None,
            catch_up_withheld: std::collections::BTreeSet::new(),
            ops_applied: VecDeque::new(),
            refute_after: Time::ZERO,
            bootstrap_left: 0,
            next_bootstrap: now,
            bootstrap_gap: Duration::ZERO,
            rejoin_backoff,
            next_sync: now,
            sync_cursor: 0,
            member_part: 0,
            pull: Default::default(),
            answers: Default::default(),
            next_suspect_refresh: now,
            next_reap: now,
            fetch: DueQueue::default(),
            discover: DueSet::with_seed(hashes),
            unproven: std::collections::BTreeMap::new(),
            discover_budget: crate::addr_budget::AddrBudget::new(
                DISCOVERY_PER_ADDR,
                DISCOVERY_WINDOW,
                crate::addr_budget::MAX_ADDRS,
            ),
            want_budget: crate::addr_budget::AddrBudget::new(
                WANT_ANSWERS_PER_SEC,
                Duration::from_secs(1),
                crate::addr_budget::MAX_ADDRS,
            ),
            verify: DueSet::with_seed(hashes),
            scaled_for: 1,
            causes: crate::cause::Causes::with_seed(hashes),
            drops: Default::default(),
            trust: Trust::new(
                TrustConfig::default(),
                session_seed(seed, generation),
                hashes,
            ),
            rollouts: Default::default(),
            reach: Reach::new(cfg.timings.probe_period, cfg.timings.probe_rtt, hashes),
            gray: {
                let mut g = crate::gray::Gray::new(&cfg.guard, id.name().clone());
                g.set_confirm(cfg.timings.probe_period * crate::gray::CONFIRM_PERIODS);
                g
            },
            gray_swim: BTreeMap::new(),
            next_gray_push: now,
            distrusted: std::collections::BTreeSet::new(),
            incarnation: 0,
            refuted: false,
            suspects_seen: 0,
            reach_state: GuardState::Normal,
            next_heal: now,
            snapshot_due: false,
            snapshot_index: None,
            thaws: Default::default(),
            fleet: crate::fleet::Fleet::new(cfg.fleet.clone(), hashes),
            fleet_armed: None,
            next_event_sync: Time::ZERO,
            coords: coords::CoordState::new(seed),
            now_us: None,
            cfg,
        })
    }
}
