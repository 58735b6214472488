//! The served view: what this node serves for every member (the truth through the guard),
//! its change events, the queries of the API, the one place `GuardCtx` is built
//! (`with_guard`) and the reach checks the guard asks for.
//!
//! A child module of `node` (it reaches the node's fields). Must stay sans-IO.

use super::*;

impl Node {
    pub fn identity(&self) -> &NodeId {
        self.foca.identity()
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    pub fn own_meta(&self) -> &NodeMeta {
        &self.own.meta
    }

    /// Our current metadata record, as peers receive it.
    pub fn own_record(&self) -> &MetaRecord {
        &self.own
    }

    pub fn has_left(&self) -> bool {
        self.left
    }

    /// True while foca has no active peer.
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// Active peers according to SWIM (not counting ourselves).
    pub fn active_peers(&self) -> usize {
        self.foca.num_members()
    }

    /// Index of the last event (the watch stream's index).
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Who sent datagrams this node refused lately, why and how many (at most
    /// `drops::MAX_SENDERS` pairs of sender and reason).
    pub fn drops(&self) -> &crate::drops::DropTable {
        &self.drops
    }

    /// SWIM's own view, for the core's tests. Drivers read what the API shows (the served
    /// view: `members`, `member`, `served_status` and the events), never this.
    #[cfg(test)]
    pub(crate) fn truth(&self) -> &Truth {
        &self.truth
    }

    /// The causes table, for the core's tests of its bounds.
    #[cfg(test)]
    pub(crate) fn causes(&self) -> &crate::cause::Causes {
        &self.causes
    }

    pub fn guard_report(&self) -> GuardReport {
        self.guard.report()
    }

    pub fn served_status(&self, name: &str) -> Option<ServedStatus> {
        let m = self.truth.get(name)?;
        Some(self.guard.served(name, m.state))
    }

    /// The served view: every known member with its served status, sorted by name (plus,
    /// after a restart, the restored members the truth does not know yet, as `held`).
    pub fn members(&self) -> Vec<MemberView> {
        let store = self.store.lock();
        let mut v: Vec<MemberView> = self
            .truth
            .iter()
            .map(|(name, m)| self.view(name, m, store.get(name)))
            .collect();
        for (name, g) in self.guard.ghosts() {
            if self.truth.get(name).is_none() {
                v.push(g.clone());
            }
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn member(&self, name: &str) -> Option<MemberView> {
        let Some(m) = self.truth.get(name) else {
            return self
                .guard
                .ghosts()
                .find(|(n, _)| ***n == *name)
                .map(|(_, g)| g.clone());
        };
        let store = self.store.lock();
        Some(self.view(name, m, store.get(name)))
    }

    pub(super) fn view(
        &self,
        name: &str,
        m: &crate::truth::TruthMember,
        rec: Option<&MetaRecord>,
    ) -> MemberView {
        let mut v = MemberView::build(m, self.guard.served(name, m.state), rec);
        v.cause = self.causes.current(name).or_else(|| {
            // No entry: it only joined (most members of a large cluster).
            (m.state == TruthState::Alive).then(crate::cause::Causes::joined)
        });
        v.damping = self.guard.damping(self.now, name);
        if let Some(cause) = self.gray.cause(name) {
            v.gray = Some(cause.to_string());
            v.truth = self.gray_swim.get(name).copied().or(v.truth);
        }
        if v.meta_version == 0 {
            // Warming: metadata not received yet; serve the restored one meanwhile.
            if let Some(g) = self.guard.restored(name) {
                v.tags = g.tags.clone();
                v.services = g.services.clone();
                v.meta_version = g.meta_version;
                v.protocol = g.protocol;
            }
        }
        v
    }

    /// The last served transitions of a member (at most `cause::HISTORY`), oldest first,
    /// each with its cause: what `shoal explain` prints.
    pub fn history(&self, name: &str) -> Vec<crate::cause::Transition> {
        let h = self.causes.history(name);
        match self.truth.get(name) {
            // No entry: it joined (when it entered its state) and nothing happened since.
            Some(m) if h.is_empty() && m.state == TruthState::Alive => {
                vec![crate::cause::Transition {
                    at_ms: m.since.as_millis(),
                    from: None,
                    to: ServedStatus::Alive,
                    generation: m.id.generation(),
                    cause: crate::cause::Causes::joined(),
                }]
            }
            _ => h,
        }
    }

    pub fn local_member(&self) -> MemberView {
        let id = self.foca.identity();
        self.member(id.name()).unwrap_or_else(|| {
            MemberView::build(
                &crate::truth::TruthMember {
                    id: id.clone(),
                    state: TruthState::Alive,
                    since: self.now,
                    served: None,
                },
                ServedStatus::Alive,
                Some(&self.own),
            )
        })
    }

    /// Every service with its instances on members the served view says are serving
    /// (alive, suspect or held), sorted by service name then node.
    pub fn services(&self) -> BTreeMap<String, Vec<Instance>> {
        let mut out: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
        for m in self.members() {
            if !m.status.is_serving() {
                continue;
            }
            for (s, mut inst) in m.services.iter().zip(m.instances()) {
                if !self.guard.serves_instance(&s.name, m.status) {
                    continue;
                }
                inst.health_held = self
                    .health
                    .held(&s.name, &m.name, &s.id)
                    .map(str::to_string);
                inst.ejected = self.outliers.ejected(&s.name, &m.name, &s.id).cloned();
                out.entry(s.name.clone()).or_default().push(inst);
            }
        }
        out
    }

    /// Addresses worth announcing to after a restart: every member we know of but ourselves.
    pub fn known_peers(&self) -> Vec<SocketAddr> {
        let me = self.foca.identity().addr();
        let mut v: Vec<SocketAddr> = self
            .truth
            .iter()
            .map(|(_, m)| m.id.addr())
            .chain(self.guard.ghosts().map(|(_, g)| g.addr))
            .filter(|a| *a != me)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Backlog of SWIM updates and metadata broadcasts still being disseminated.
    pub fn backlog(&self) -> (usize, usize) {
        (
            self.foca.updates_backlog(),
            self.foca.custom_broadcast_backlog(),
        )
    }

    /// Runs `f` on the guard with everything it may look at.
    pub(super) fn with_guard<R>(
        &mut self,
        now: Time,
        f: impl FnOnce(&mut Guard, &GuardCtx<'_>) -> R,
    ) -> R {
        self.reach
            .set_stretch(u32::from(self.foca.local_health()) + 1);
        let store = self.store.lock();
        let ctx = GuardCtx {
            truth: &self.truth,
            meta: &store,
            self_name: &self.cfg.name,
            active_peers: self.foca.num_members(),
            idle: self.idle,
            reach: self.reach.view(now),
            gray: Some(&self.gray),
        };
        f(&mut self.guard, &ctx)
    }

    /// Advances the reach check in flight and starts one when the guard wants it (or when
    /// we just refuted a suspicion of ourselves: the cluster cannot hear us well).
    pub(super) fn check_reach(&mut self, now: Time) {
        let connected = !self.idle && !self.reconnecting;
        self.reach.set_connected(now, connected);
        let period = self.cfg.timings.probe_period;
        let state = self.guard.state();
        if state != self.reach_state {
            // A new episode (or its end): check promptly again.
            self.reach_state = state;
            self.reach.set_spacing(period);
        }
        let (pings, finished) = self.reach.poll(now);
        self.send_pings(pings);
        if finished {
            self.with_guard(now, |g, ctx| g.on_reach(now, ctx));
            if matches!(
                self.guard.state(),
                GuardState::Frozen | GuardState::Isolated
            ) {
                // While the fault lasts, full checks back off (1, 2, 4 ... 16 probe
                // periods apart); heal pings below notice the end of it meanwhile.
                let wider = (self.reach.spacing() * 2).min(period * 16);
                self.reach.set_spacing(wider);
            }
        }
        // (Also while foca is idle: an agent cut off from everyone needs these most.)
        if matches!(state, GuardState::Frozen | GuardState::Isolated) && now >= self.next_heal {
            self.next_heal = now.plus(period);
            let missing = self.missing_peers();
            let pings = self.reach.heal_pings(missing, &mut self.rng);
            self.send_pings(pings);
        }
        if !connected || !self.reach.can_start(now) {
            return;
        }
        let wanted = self.with_guard(now, |g, ctx| g.wants_reach_check(ctx));
        if !(wanted || std::mem::take(&mut self.refuted)) {
            return;
        }
        let mut suspects = self.hashes.set();
        let mut candidates: Vec<(Arc<str>, SocketAddr)> = self
            .guard
            .baseline_unordered()
            .filter_map(|n| match self.truth.get(n) {
                Some(m) if m.state == TruthState::Left => None,
                Some(m) => {
                    if m.state == TruthState::Suspect {
                        suspects.insert(n.clone());
                    }
                    Some((n.clone(), m.id.addr()))
                }
                None => self.guard.ghost(n).map(|g| (n.clone(), g.addr)),
            })
            .collect();
        // The baseline's order is its hash table's: sort so that the sample replays exactly.
        candidates.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let pings = self.reach.start(now, candidates, &suspects, &mut self.rng);
        self.stats.reach_checks = self.reach.checks;
        self.send_pings(pings);
    }

    /// Baseline peers SWIM does not call alive, or that the last check did not reach,
    /// sorted by name (so that the pick replays exactly).
    pub(super) fn missing_peers(&self) -> Vec<(Arc<str>, SocketAddr)> {
        let unreached = self.reach.view(self.now).last.map(|r| &r.unreached);
        let mut out: Vec<(Arc<str>, SocketAddr)> = self
            .guard
            .baseline_unordered()
            .filter_map(|n| match self.truth.get(n) {
                Some(m) if m.state == TruthState::Left => None,
                Some(m)
                    if m.state == TruthState::Alive
                        && !unreached.is_some_and(|u| u.contains(n)) =>
                {
                    None
                }
                Some(m) => Some((n.clone(), m.id.addr())),
                None => self.guard.ghost(n).map(|g| (n.clone(), g.addr)),
            })
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub(super) fn send_pings(&mut self, pings: Vec<(SocketAddr, u64)>) {
        for (addr, nonce) in pings {
            self.stats.reach_pings += 1;
            self.send_shoal(addr, &ShoalMsg::Ping { nonce });
        }
    }

    pub(super) fn reap(&mut self, now: Time, name: &Arc<str>) {
        if **name == *self.cfg.name {
            return;
        }
        let Some(m) = self.truth.remove(name) else {
            return;
        };
        self.health.forget(now, name);
        self.gray.forget(name);
        self.gray_swim.remove(name);
        self.store.lock().remove(name);
        self.discover.remove(name);
        let prev = m.served.or(self.served_ghosts.remove(name));
        self.with_guard(now, |g, ctx| {
            g.on_change(now, ctx, name, Some(m.state), None)
        });
        let mut view = MemberView::build(&m, prev.unwrap_or(ServedStatus::Down), None);
        view.cause = self.causes.remove(name);
        self.push_reaped(now, prev, view);
    }

    /// The event of a member that is gone from the served view (reaped, or a restored
    /// ghost dropped), with what was served for it before.
    pub(super) fn push_reaped(
        &mut self,
        now: Time,
        previous: Option<ServedStatus>,
        member: MemberView,
    ) {
        self.push_event(
            now,
            EventKind::Member {
                change: MemberChange::Reaped,
                previous,
                member,
            },
        );
    }

    /// Records a SWIM state for a member, tells the guard, and emits the served change.
    pub(super) fn set_truth(&mut self, now: Time, id: &NodeId, state: TruthState) {
        if !self.identity_admitted(now, id) {
            return;
        }
        let state = self.gray_overlay(id.name(), state);
        let (changed, prev) = self.truth.set(now, id, state);
        if !changed {
            return;
        }
        self.with_guard(now, |g, ctx| {
            g.on_change(now, ctx, id.name(), prev, Some(state))
        });
        self.emit_served(now, id.name(), prev.is_none(), false);
    }

    /// Emits an event if what we serve for `name` changed (or its metadata did).
    pub(super) fn emit_served(
        &mut self,
        now: Time,
        name: &Arc<str>,
        joined: bool,
        meta_changed: bool,
    ) {
        if self.adopting {
            if let Some(m) = self.truth.get(name) {
                let status = self.guard.served(name, m.state);
                self.swap_served(name, status);
            }
            return;
        }
        // Most calls change nothing: decide that before building the view.
        if !joined && !meta_changed {
            if let Some(m) = self.truth.get(name) {
                let status = self.guard.served(name, m.state);
                if m.served == Some(status)
                    && (self.served_ghosts.is_empty() || !self.served_ghosts.contains_key(name))
                {
                    return;
                }
            }
        }
        let Some(mut view) = self.member(name) else {
            return;
        };
        let prev = self.swap_served(name, view.status);
        if prev != Some(view.status) && self.truth.get(name).is_some() {
            view.cause = Some(self.record_cause(now, name, prev, &view));
        }
        let change = if joined || prev.is_none() {
            MemberChange::Joined
        } else if prev != Some(view.status) {
            MemberChange::Status
        } else if meta_changed {
            MemberChange::Meta
        } else {
            return;
        };
        if change != MemberChange::Meta {
            self.health_observe(now, name);
        }
        self.push_event(
            now,
            EventKind::Member {
                change,
                previous: prev,
                member: view,
            },
        );
    }

    /// Records a served transition of `name` with its cause, from what the node saw.
    fn record_cause(
        &mut self,
        now: Time,
        name: &Arc<str>,
        from: Option<ServedStatus>,
        view: &MemberView,
    ) -> crate::cause::Cause {
        if from.is_none() && view.status == ServedStatus::Alive && !self.causes.has(name) {
            // A join (every member of a forming cluster, on every node): nothing to keep.
            return crate::cause::Causes::joined();
        }
        let mode = self.guard.config().mode;
        // The guard's words only matter for a member going down or held.
        let guard_state = if matches!(view.status, ServedStatus::Down | ServedStatus::Held) {
            let report = self.guard.report();
            format!("{}: {}", report.state.as_str(), report.reason)
        } else {
            String::new()
        };
        let facts = crate::cause::Facts {
            now,
            generation: view.generation,
            from,
            to: view.status,
            addr: view.addr,
            hold: self.guard.hold_reason(name),
            guard_state: &guard_state,
            enforce: mode == crate::GuardMode::Enforce,
            guard_off: mode == crate::GuardMode::Off,
        };
        self.causes.transition(name, &facts)
    }

    /// Records what is served for `name`; returns what was served before.
    pub(super) fn swap_served(
        &mut self,
        name: &Arc<str>,
        status: ServedStatus,
    ) -> Option<ServedStatus> {
        let ghost = if self.served_ghosts.is_empty() {
            None
        } else {
            self.served_ghosts.remove(name)
        };
        match self.truth.swap_served(name, status) {
            Some(prev) => prev.or(ghost),
            None => {
                self.served_ghosts.insert(name.clone(), status);
                ghost
            }
        }
    }

    pub(super) fn push_event(&mut self, now: Time, kind: EventKind) {
        self.index += 1;
        self.events.push_back(Event {
            index: self.index,
            at_ms: now.as_millis(),
            kind,
        });
    }
}
