//! Anti-entropy: our records and members reconciled with peers. Digests and wants of
//! metadata records, pushes of records (validated here), membership filters answered with
//! intros, fetches of missing records (a peer first, then the member), discovery of nodes
//! known by record but missed by SWIM, and what a changed record does to the truth.
//!
//! A child module of `node` (it reaches the node's fields). Must stay sans-IO.

use super::{
    Node, Transmit, FETCH_BATCHES_PER_TICK, FETCH_PER_TICK, INTRO_MSGS_PER_ROUND, PEER_FETCH_TRIES,
    WANT_MAX_NAMES,
};
use crate::identity::{validate_name, NodeId};
use crate::meta::MetaRecord;
use crate::sync::{
    pack_intro, pack_push, DigestEntry, IntroEntry, NameFilter, ShoalMsg, SHARD_TARGET,
};
use crate::time::Time;
use crate::truth::TruthState;
use crate::wire::{self, Kind, MAX_DATAGRAM};
use rand::RngExt;
use std::net::SocketAddr;
use std::sync::Arc;

impl Node {
    pub(super) fn send_shoal(&mut self, dst: SocketAddr, msg: &ShoalMsg) {
        let body = msg.encode();
        wire::write_header(&mut self.out.buf, &self.cfg.cluster_label, Kind::Shoal);
        self.out.buf.extend_from_slice(&body);
        if self.out.buf.len() > MAX_DATAGRAM {
            self.stats.tx_oversized += 1;
            return;
        }
        self.stats.tx_datagrams += 1;
        self.stats.tx_bytes += self.out.buf.len() as u64;
        self.out.transmits.push_back(Transmit {
            dst,
            data: self.out.buf.clone(),
        });
    }

    pub(super) fn shoal_budget(&self) -> usize {
        MAX_DATAGRAM - wire::overhead(&self.cfg.cluster_label) - 8
    }

    pub(super) fn handle_shoal(&mut self, now: Time, from: SocketAddr, msg: ShoalMsg) {
        if self.left {
            return;
        }
        match msg {
            ShoalMsg::Digest {
                fingerprint,
                count,
                entries,
                replies,
            } => {
                let (mine_fp, mine_count) = {
                    let s = self.store();
                    (s.fingerprint(), s.len() as u32)
                };
                if fingerprint == mine_fp && count == mine_count {
                    return;
                }
                let mut want = Vec::new();
                let mut push = Vec::new();
                {
                    let s = self.store();
                    for e in entries {
                        match s.get(&e.name) {
                            None => want.push(e.name),
                            Some(r) if r.stamp() < (e.generation, e.version) => want.push(e.name),
                            Some(r) if r.stamp() > (e.generation, e.version) => {
                                push.extend(s.get_shared(&e.name).cloned())
                            }
                            Some(_) => {}
                        }
                    }
                }
                for m in pack_push(push, self.shoal_budget()) {
                    self.send_shoal(from, &m);
                }
                if !want.is_empty() {
                    self.send_want(from, want);
                }
                if replies > 0 {
                    let d = self.digest(replies.min(2) - 1);
                    self.send_shoal(from, &d);
                }
            }
            ShoalMsg::Want { names } => {
                // One datagram of records per `Want`, and a few `Want`s per requester a
                // second: a request of 256 names must not draw 256 records (a key holder's
                // amplifier). What did not fit is asked again at the next digest round.
                if !self.want_budget.take(now, from) {
                    self.stats.want_answers_limited += 1;
                    return;
                }
                let recs: Vec<Arc<MetaRecord>> = {
                    let s = self.store();
                    names
                        .iter()
                        .take(256)
                        .filter_map(|n| s.get_shared(n).cloned())
                        .collect()
                };
                if let Some(m) = pack_push(recs, self.shoal_budget()).into_iter().next() {
                    self.send_shoal(from, &m);
                }
            }
            ShoalMsg::Members {
                part,
                parts,
                filter,
            } => self.answer_member_filter(now, from, part, parts, &filter),
            ShoalMsg::Intro { members } => self.apply_intros(now, members),
            ShoalMsg::Ping { nonce } => self.send_shoal(from, &ShoalMsg::Pong { nonce }),
            ShoalMsg::Reach { reports } => self.receive_reach(now, reports),
            ShoalMsg::Fleet(m) => self.handle_fleet(now, from, m),
            ShoalMsg::Coord(c) => self.receive_coordinate(from, c),
            ShoalMsg::Pong { nonce } => {
                // A peer SWIM has given up on answers: it is back, tell SWIM so now rather
                // than at the next periodic announce (heals a partition in one round trip).
                if let Some((name, addr)) = self.reach.on_pong(now, from, nonce) {
                    let known_alive = self
                        .truth
                        .get(&name)
                        .is_some_and(|m| m.state().is_active() && m.id.addr() == addr);
                    if !known_alive {
                        self.announce(now, addr);
                    }
                }
            }
            ShoalMsg::Push { records } => {
                let mut relay = Vec::new();
                let mut about_us = None;
                let limit = self.generation_limit(now);
                let s = &mut self.foca.broadcast_handler_mut().store;
                for r in records {
                    // Nobody but us writes our record: one we did not issue is refuted.
                    if *r.name == *self.cfg.name {
                        self.stats.dropped_refused += 1;
                        about_us = about_us.max(Some((r.stamp(), r.leaving)));
                        continue;
                    }
                    // Most records are not newer than ours: check that before validating.
                    if !s.wants(&r.name, r.stamp(), !r.ext.is_empty()) {
                        self.stats.meta_records_received += 1;
                        continue;
                    }
                    if crate::identity::validate_name(&r.name).is_err() {
                        self.stats.dropped_bad_metadata += 1;
                        continue;
                    }
                    if !crate::meta::stamp_acceptable(r.stamp(), limit) {
                        self.stats.dropped_refused += 1;
                        continue;
                    }
                    let r = Arc::try_unwrap(r).unwrap_or_else(|a| (*a).clone());
                    let Ok(r) = self.shared.record(r) else {
                        self.stats.dropped_bad_metadata += 1;
                        continue;
                    };
                    self.stats.meta_records_received += 1;
                    if !s.admit(&r) {
                        continue;
                    }
                    // Intent (a leave, a restart) must reach everyone before the failure
                    // detector calls the silence a failure.
                    let leaving = (r.leaving || r.restart().is_some()).then(|| r.encode());
                    let relayed = r.ext.is_empty() && r.addr != from;
                    let name = r.name.clone();
                    if s.offer(r) {
                        relay.extend(leaving);
                        if relayed {
                            let at = now.plus(self.cfg.timings.meta_fetch_after);
                            self.verify.insert(name, at);
                        }
                    }
                }
                // A graceful leave must reach everyone as intent before the failure detector
                // calls it a failure: spread leaving records learned by direct push.
                for data in relay {
                    let _ = self.foca.add_broadcast(&data);
                }
                if let Some((stamp, leaving)) = about_us {
                    self.refute_record_about_us(now, stamp, leaving);
                }
            }
        }
    }

    pub(super) fn send_want(&mut self, dst: SocketAddr, mut names: Vec<Arc<str>>) {
        let budget = self.shoal_budget();
        while !names.is_empty() {
            let mut size = 4;
            let mut n = 0;
            for name in names.iter().take(WANT_MAX_NAMES) {
                size += name.len() + 2;
                if size > budget {
                    break;
                }
                n += 1;
            }
            let n = n.max(1);
            let rest = names.split_off(n.min(names.len()));
            self.send_shoal(dst, &ShoalMsg::Want { names });
            names = rest;
        }
    }

    /// Shards of the name space a membership filter covers one at a time.
    fn member_parts(&self) -> u32 {
        let active = self
            .truth
            .iter()
            .filter(|(_, m)| m.state().is_active())
            .count();
        active
            .div_ceil(SHARD_TARGET)
            .clamp(1, crate::sync::MAX_PARTS as usize) as u32
    }

    /// While the bulk transfer after joining lasts: asks `PULLS_PER_TICK` random peers (not
    /// seeds, while we know any other peer: a mass start must not pile onto them) for the
    /// members of the next shards we lack (`core::formation`).
    pub(super) fn pull_members(&mut self) {
        if !self.pull.active() {
            return;
        }
        let parts = self.member_parts();
        for _ in 0..self.pull.due(parts) {
            let Some(dst) = self.pull_peer() else { return };
            self.stats.member_pulls += 1;
            self.send_member_filter(dst);
        }
    }

    /// A random active peer, a non-seed if one of a few draws gives one.
    fn pull_peer(&mut self) -> Option<SocketAddr> {
        let mut pick = None;
        for _ in 0..4 {
            pick = self.random_peer();
            if pick.is_some_and(|a| !self.seeds.contains(&a)) {
                break;
            }
        }
        pick
    }

    /// Opens a membership anti-entropy round with `dst`: a Bloom filter of the members we
    /// know as active in one shard of the name space (the shard rotates every round).
    pub(super) fn send_member_filter(&mut self, dst: SocketAddr) {
        let parts = self.member_parts();
        let part = self.member_part % parts;
        self.member_part = self.member_part.wrapping_add(1);
        let names: Vec<(u64, u64)> = self
            .truth
            .iter()
            .filter(|(_, m)| m.state().is_active() && (parts == 1 || m.id.shard(parts) == part))
            .map(|(_, m)| m.id.bloom())
            .collect();
        // part, parts, hash count and length prefix take at most 16 bytes.
        let mut filter = NameFilter::for_names(names.len(), self.shoal_budget() - 16);
        for h in names {
            filter.insert_hashed(h);
        }
        self.stats.member_sync_rounds += 1;
        self.send_shoal(
            dst,
            &ShoalMsg::Members {
                part,
                parts,
                filter,
            },
        );
    }

    /// Answers a membership filter with the active members of its shard it lacks: at most
    /// `INTRO_MSGS_PER_ROUND` datagrams, and none once this second's answer budget is spent
    /// (`core::formation`: the asker asks another peer next).
    pub(super) fn answer_member_filter(
        &mut self,
        now: Time,
        from: SocketAddr,
        part: u32,
        parts: u32,
        filter: &NameFilter,
    ) {
        if parts == 0 || parts > crate::sync::MAX_PARTS || part >= parts || !filter.is_valid() {
            self.stats.dropped_decode += 1;
            return;
        }
        // References first: only the members that fit the answer become entries (a joiner
        // lacks hundreds; at most `INTRO_MSGS_PER_ROUND` datagrams of them are sent).
        let mut missing: Vec<&crate::identity::NodeId> = self
            .truth
            .iter()
            .filter(|(_, m)| {
                m.state().is_active()
                    && m.id.addr() != from
                    && (parts == 1 || m.id.shard(parts) == part)
                    && !filter.contains_hashed(m.id.bloom())
            })
            .map(|(_, m)| &m.id)
            .collect();
        let entry = |id: &crate::identity::NodeId| IntroEntry {
            name: id.name().clone(),
            addr: id.addr(),
            generation: id.generation(),
        };
        let Some(first) = missing.first() else {
            return;
        };
        let budget = self.shoal_budget();
        let per_msg = (budget / entry(first).max_encoded_len()).max(1);
        let want = missing.len().div_ceil(per_msg).min(INTRO_MSGS_PER_ROUND) as u32;
        let allowed = self.answers.take(now, want) as usize;
        if allowed == 0 {
            self.stats.member_pulls_unanswered += 1;
            return;
        }
        // More than fits: start at a random place so that repeated rounds cover them all.
        let start = self.rng.random_range(0..missing.len());
        missing.rotate_left(start);
        let msgs = pack_intro(missing.into_iter().map(entry), budget, allowed);
        for m in msgs {
            if let ShoalMsg::Intro { members } = &m {
                self.stats.member_intros_sent += members.len() as u64;
            }
            self.send_shoal(from, &m);
        }
    }

    /// Hands members a peer knows as active (and we do not) to SWIM, as a feed would.
    pub(super) fn apply_intros(&mut self, now: Time, members: Vec<IntroEntry>) {
        let own_addr = self.foca.identity().addr();
        let mut ids = Vec::new();
        for e in members.into_iter().take(256) {
            if *e.name == *self.cfg.name || e.addr == own_addr {
                continue;
            }
            if validate_name(&e.name).is_err() {
                self.stats.dropped_bad_metadata += 1;
                continue;
            }
            if e.generation > self.generation_limit(now) {
                self.stats.dropped_refused += 1;
                continue;
            }
            // Known in this generation or a newer one: SWIM already has the better word.
            if let Some(m) = self.truth.get(&e.name) {
                if m.id.generation() >= e.generation {
                    continue;
                }
            }
            let id = self.shared.id(&e.name, e.addr, e.generation);
            // A bound name's new address or generation needs its signed record: SWIM must
            // not even hear of an unproven one through us (`node::identity`).
            if !self.identity_proven(&id) {
                let _ = self.identity_admitted(now, &id);
                continue;
            }
            ids.push(id);
        }
        if ids.is_empty() {
            return;
        }
        self.stats.member_intros_applied += ids.len() as u64;
        // Outside a bulk transfer, re-broadcast like any news: others likely missed these
        // members too. (Tried without: the 1,000-node join reached full view later on 2 seeds
        // of 3, never on one.) What a joiner pulls in bulk everyone else has: not news.
        let news = !self.pull.active();
        self.pull.news();
        self.swim(now, |foca, rt| {
            foca.apply_many(ids.into_iter().map(foca::Member::alive), news, rt)
        });
    }

    /// A digest of our records: the fingerprint of all of them and a rotating slice.
    pub(super) fn digest(&mut self, replies: u8) -> ShoalMsg {
        let budget = self.shoal_budget() - 24;
        let s = &self.foca.broadcast_handler().store;
        let mut entries = Vec::new();
        let mut size = 0;
        let start = self.sync_cursor;
        let mut walked = 0;
        let names = self.truth.names_rotated(start);
        for name in names {
            if let Some(r) = s.get(name) {
                let e = DigestEntry {
                    name: name.clone(),
                    generation: r.generation,
                    version: r.version,
                };
                if size + e.max_encoded_len() > budget {
                    break;
                }
                size += e.max_encoded_len();
                entries.push(e);
            }
            walked += 1;
        }
        self.sync_cursor = start.wrapping_add(walked);
        ShoalMsg::Digest {
            fingerprint: s.fingerprint(),
            count: s.len() as u32,
            entries,
            replies,
        }
    }

    /// Asks the owners of records a peer pushed without extension fields for their own copy,
    /// once the owner's own gossip had time to bring it. A v0.1.0 agent writes the records it
    /// relays without their fields, and a copy of the same version is not newer: without
    /// this, an agent that learned a member's record from a v0.1.0 peer would never learn
    /// the fields (its protocol among them). An owner of v0.1.0 answers with the same record:
    /// one small datagram per record and version, while v0.1.0 agents remain.
    pub(super) fn verify_relayed(&mut self, now: Time) {
        for name in self.verify.take_due(now, FETCH_PER_TICK) {
            let owner = {
                let s = self.store();
                let Some(r) = s.get(&name) else { continue };
                if !r.ext.is_empty() || r.leaving {
                    continue;
                }
                r.addr
            };
            if !self.truth.get(&name).is_some_and(|m| m.state().is_active()) {
                continue;
            }
            self.stats.meta_direct_requests += 1;
            self.send_want(owner, vec![name]);
        }
    }

    /// Asks for the metadata records still missing once their wait is over: first in
    /// batches from random peers (a member known for a while is known with its record by
    /// most), then, for what that did not bring, from each member itself. Entries whose
    /// record came meanwhile, or whose member is gone, are skipped without using up budget.
    pub(super) fn fetch_missing_meta(&mut self, now: Time) {
        let budget = self.shoal_budget();
        let retry_at = now.plus(self.cfg.timings.meta_fetch_after);
        let mut batch: Vec<Arc<str>> = Vec::new();
        let mut batch_size = 4;
        let mut batches = 0;
        let mut direct = 0;
        let mut looked = 0;
        let peer = self.fetch_peer();
        while looked < FETCH_PER_TICK * 64 {
            let Some((name, at, tries)) = self.fetch.pop_due(now) else {
                break;
            };
            looked += 1;
            let Some(m) = self.truth.get(&name) else {
                continue;
            };
            if !m.state().is_active() || !self.needs_meta(&m.id) {
                continue;
            }
            let owner = m.id.addr();
            match peer {
                Some(p) if tries < PEER_FETCH_TRIES => {
                    if batch_size + name.len() + 2 > budget {
                        self.send_meta_batch(std::mem::take(&mut batch), p, batches);
                        batch_size = 4;
                        batches += 1;
                        if batches >= FETCH_BATCHES_PER_TICK {
                            self.fetch.unpop(name, at, tries);
                            break;
                        }
                    }
                    batch_size += name.len() + 2;
                    batch.push(name.clone());
                    self.fetch.push(name, retry_at, tries + 1);
                }
                _ => {
                    if direct >= FETCH_PER_TICK {
                        self.fetch.unpop(name, at, tries);
                        break;
                    }
                    direct += 1;
                    self.stats.meta_direct_requests += 1;
                    self.send_want(owner, vec![name]);
                }
            }
        }
        if let (false, Some(p)) = (batch.is_empty(), peer) {
            self.send_meta_batch(batch, p, batches);
        }
    }

    /// Sends batch number `index` of this tick's metadata requests: the first to `first`,
    /// each later one to another random peer.
    pub(super) fn send_meta_batch(
        &mut self,
        names: Vec<Arc<str>>,
        first: SocketAddr,
        index: usize,
    ) {
        let dst = if index == 0 {
            first
        } else {
            self.random_peer().unwrap_or(first)
        };
        self.stats.meta_batch_requests += 1;
        self.send_want(dst, names);
    }

    pub(super) fn needs_meta(&self, id: &NodeId) -> bool {
        self.store()
            .get(id.name())
            .map(|r| r.generation < id.generation())
            .unwrap_or(true)
    }

    /// Queues a fetch of `name`'s record. A member learned through gossip has its record
    /// travelling beside it: ask only if it has not come after `meta_fetch_after` (a record
    /// that changed while we could not hear it is caught by the anti-entropy digest). While
    /// we are joining, though, members come from feeds without their records, and nothing
    /// will bring those: ask at the next tick, or the apps on this host see every service
    /// empty for that long.
    pub(super) fn queue_fetch(&mut self, now: Time, name: &Arc<str>) {
        if self.idle || self.bootstrap_left > 0 || self.pull.active() {
            // At the head: nothing queued is due earlier than now.
            self.fetch.unpop(name.clone(), now, 0);
        } else {
            self.fetch
                .push(name.clone(), now.plus(self.cfg.timings.meta_fetch_after), 0);
        }
    }

    pub(super) fn record_says_leaving(&self, id: &NodeId) -> bool {
        self.store()
            .get(id.name())
            .map(|r| r.leaving && r.generation >= id.generation())
            .unwrap_or(false)
    }

    /// Whether SWIM misses the node behind `name`'s record: unknown, or known down in an
    /// older life than the record's (it restarted and we missed it).
    pub(super) fn missing_from_swim(&self, name: &str) -> Option<SocketAddr> {
        let store = self.store();
        let rec = store.get(name)?;
        if rec.leaving || *rec.name == *self.cfg.name {
            return None;
        }
        match self.truth.get(name) {
            None => Some(rec.addr),
            Some(m) if !m.state().is_active() && m.id.generation() < rec.generation => {
                Some(rec.addr)
            }
            Some(_) => None,
        }
    }

    pub(super) fn schedule_discovery(&mut self, now: Time, name: &Arc<str>) {
        if self.missing_from_swim(name).is_some() {
            self.discover
                .insert_if_absent(name.clone(), now.plus(self.cfg.timings.meta_fetch_after));
        }
    }

    pub(super) fn drain_meta_changes(&mut self, now: Time) {
        let changed = self.store_mut().take_changed();
        for name in changed {
            if !self.unproven.is_empty() {
                self.admit_proven_identity(now, &name);
            }
            let Some(m) = self.truth.get(&name) else {
                self.schedule_discovery(now, &name);
                continue;
            };
            let id = m.id.clone();
            let state = m.state();
            if !state.is_active() {
                self.schedule_discovery(now, &name);
            }
            let leaving = self.record_says_leaving(&id);
            if leaving && state != TruthState::Left && *name != *self.cfg.name {
                // Graceful leave: intent, not failure (also reclassifies an earlier `down`).
                self.set_truth(now, &id, TruthState::Left);
            } else if !leaving
                && state == TruthState::Left
                && *name != *self.cfg.name
                && self
                    .foca
                    .is_active_addr(&crate::identity::AddrKey::of(id.addr()))
            {
                // A leave the member refuted (a forgery we took before its key was bound
                // here): it never left, and SWIM still has it alive.
                self.set_truth(now, &id, TruthState::Alive);
            } else if state == TruthState::Alive {
                self.with_guard(now, |g, ctx| g.on_record(ctx, &name));
            }
            self.health_observe(now, &name);
            self.emit_served(now, &name, false, true);
        }
    }
}
