//! The hosts' lives: building a node as the agent would on (re)start (config, seeds,
//! identity generation, restored snapshot), starting, crashing, leaving and restarting it,
//! the scheduled actions of faults, and the services' check runs.
//!
//! A child module of `world` (it reaches the world's fields). Must not decide membership:
//! the core does.

use super::*;
use crate::scenario::Registered;

impl World<'_> {
    /// Host `i`'s config file: its tags and the services it offers from the file.
    pub(super) fn meta_of(&self, i: usize) -> NodeMeta {
        let mut meta = self.services_of(i, Registered::Config);
        meta.tags.insert("zone".into(), format!("z{}", i % 3));
        meta
    }

    /// The services of `kind` host `i` provides.
    fn services_of(&self, i: usize, kind: Registered) -> NodeMeta {
        let mut meta = NodeMeta::default();
        for (s, provs) in self.sc.services.iter().zip(&self.providers) {
            if provs.contains(&i) && s.registered == kind {
                meta.services.insert(
                    s.name.clone(),
                    Service {
                        name: s.name.clone(),
                        port: s.port,
                        tags: BTreeMap::new(),
                        health: None,
                        health_output: None,
                    },
                );
            }
        }
        meta
    }

    /// The metadata host `i` starts with, as the agent does: the config file, merged with
    /// the registrations its data directory holds (a restart with `keep_data`) as a SIGHUP
    /// would merge them (`shoal_core::registrations`).
    fn start_meta(&mut self, i: usize, restart: bool, keep_data: bool) -> NodeMeta {
        let file = self.meta_of(i);
        if restart && !keep_data {
            self.hosts[i].registrations = None;
        }
        match &self.hosts[i].registrations {
            Some((current, old_file)) if restart => {
                shoal_core::merge_meta(current, old_file, &file)
            }
            _ => file,
        }
    }

    /// The apps of host `i` register their services through the API (once, on the first
    /// start); the agent persists its registrations after every API change and at start.
    fn register_apps(&mut self, i: usize, now: Time) {
        let file = self.meta_of(i);
        let apps = (!self.hosts[i].apps_registered).then(|| self.services_of(i, Registered::Api));
        let h = &mut self.hosts[i];
        let Some(node) = h.node.as_mut() else { return };
        for svc in apps.into_iter().flat_map(|m| m.services.into_values()) {
            // Valid by construction (the scenario's names and ports were validated).
            let _ = node.register_service(now, svc);
        }
        h.apps_registered = true;
        let mut current = node.own_meta().clone();
        for s in current.services.values_mut() {
            s.health_output = None;
        }
        h.registrations = Some((current, file));
    }

    /// Builds node `i`'s core as the agent would on (re)start: config (its seeds are the
    /// configured ones, as the agent's `join`), identity generation, and on a restart with
    /// its data directory, the last snapshot it handed out, restored by the core as the
    /// agent's is (served as `warming`; up to 16 of its peers join the seeds).
    fn new_node(&mut self, i: usize, keep_data: bool) -> Result<(Node, u64), SimError> {
        let now_ms = self.now_ms();
        let restart = self.hosts[i].state == HostState::Crashed;
        let seeds_n = self.sc.cluster.seeds.min(self.sc.nodes);
        let seeds: Vec<SocketAddr> = (0..seeds_n).filter(|s| *s != i).map(addr_of).collect();
        let life = self.hosts[i].life;
        let cfg = NodeConfig {
            name: self.names[i].clone(),
            advertise: addr_of(i),
            cluster_label: String::new(),
            timings: self.sc.lifeguard.apply(self.sc.profile.timings()),
            seeds,
            guard: self.sc.guard.config(self.mode),
            track_suspects: true,
            outlier: Default::default(),
            fleet: self.fleet_config(),
        };
        let generation = (self.hosts[i].generation + 1).max(now_ms + 1);
        let seed =
            self.sc.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (u64::from(life) << 48);
        let meta = self.start_meta(i, restart, keep_data);
        let shared = self.shared.clone();
        let mut node = Node::with_shared(cfg, generation, meta, seed, Time(now_ms), shared)
            .map_err(|source| SimError::Node { node: i, source })?;
        let saved = self.hosts[i].snapshot.take();
        if let (true, Some(snap)) = (restart && keep_data, saved) {
            // As the agent does: serve the saved view as `warming` and rejoin through its peers.
            // A snapshot the core refuses to serve (too old) only seeds the rejoin, as there.
            let _ = node.restore(Time(now_ms), snap);
        }
        Ok((node, generation))
    }

    pub(super) fn start(&mut self, i: usize, keep_data: bool) -> Result<(), SimError> {
        if self.running(i) || self.hosts[i].state == HostState::Left {
            return Ok(());
        }
        let (node, generation) = self.new_node(i, keep_data)?;
        self.run_node(i, node, generation, true)
    }

    /// `[cluster] formed`: every initial node starts now, already holding every other one
    /// (members and records), as after a full state transfer.
    pub(super) fn start_formed(&mut self) -> Result<(), SimError> {
        let n = self.sc.nodes;
        let mut nodes = Vec::with_capacity(n);
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let (node, generation) = self.new_node(i, false)?;
            members.push((
                node.identity().clone(),
                std::sync::Arc::new(node.own_record().clone()),
            ));
            nodes.push((node, generation));
        }
        let now = Time(self.now_ms());
        for (i, (mut node, generation)) in nodes.into_iter().enumerate() {
            node.adopt_members(now, &members)
                .map_err(|source| SimError::Node { node: i, source })?;
            self.run_node(i, node, generation, false)?;
            self.rec.adopted(i, n - 1, now.0);
        }
        Ok(())
    }

    /// Starts `node` as host `i`'s running core; `track` opens the join spreads this start
    /// should be measured by.
    pub(super) fn run_node(
        &mut self,
        i: usize,
        mut node: Node,
        generation: u64,
        track: bool,
    ) -> Result<(), SimError> {
        let now_ms = self.now_ms();
        let restart = self.hosts[i].state == HostState::Crashed;
        node.start(Time(now_ms));
        let h = &mut self.hosts[i];
        h.node = Some(node);
        self.register_apps(i, Time(now_ms));
        let h = &mut self.hosts[i];
        h.state = HostState::Running;
        h.generation = generation;
        h.busy_until = 0;
        h.pause_until = 0;
        self.rec.node_up(i, now_ms);
        if restart {
            self.rec.close_subject(i, now_ms);
            self.rec.close_spread(i, SpreadKind::Crash, now_ms);
        }
        let is_initial = i < self.sc.nodes && !restart;
        if track && (restart || !is_initial || self.hosts[i].track_join) {
            if is_initial {
                // Observers: the whole initial cluster (all of it runs by the end).
                let n = self.sc.nodes;
                self.rec
                    .open_spread(SpreadKind::Join, i, generation, now_ms, 0..n, false);
            } else {
                let obs: Vec<usize> = (0..self.hosts.len()).filter(|&o| self.running(o)).collect();
                self.rec.open_spread(
                    SpreadKind::Join,
                    i,
                    generation,
                    now_ms,
                    obs.into_iter(),
                    restart,
                );
            }
        }
        self.start_checks(i);
        self.flush(i, self.now);
        Ok(())
    }

    /// Every node has a handler for the simulated query when the scenario asks one.
    fn fleet_config(&self) -> shoal_core::FleetConfig {
        let asks = self.sc.faults.iter().any(|f| f.kind == FaultKind::Query);
        shoal_core::FleetConfig {
            query_handlers: if asks {
                vec![crate::measure_queries::QUERY_NAME.to_string()]
            } else {
                Vec::new()
            },
            ..Default::default()
        }
    }

    pub(super) fn stop(&mut self, i: usize, state: HostState) {
        let now_ms = self.now_ms();
        let h = &mut self.hosts[i];
        let mut published = 0;
        if let Some(n) = h.node.take() {
            published = n.stats().health_published;
            self.coordinates_sent_stopped += n.stats().coordinates_sent;
            // A crash saves nothing (the data directory keeps the last periodic snapshot); a
            // graceful leave saves one on the way out, as the agent does on SIGTERM/SIGINT.
            if state == HostState::Left && h.keeps_data {
                h.snapshot = Some(n.snapshot(Time(now_ms)));
            }
            h.generation = h.generation.max(n.identity().generation());
        }
        h.state = state;
        h.life += 1;
        h.wake = None;
        h.busy_until = 0;
        h.pause_until = 0;
        self.health.add_published(published);
        self.rec.node_down(i, now_ms);
        self.rec.close_observer(i, now_ms);
        self.rec.close_subject(i, now_ms);
        self.rec.close_spread(i, SpreadKind::Join, now_ms);
    }

    pub(super) fn act(&mut self, a: Action) -> Result<(), SimError> {
        let now_ms = self.now_ms();
        match a {
            Action::Rule(r, on) => {
                if let Some(rule) = self.net.rules.get_mut(r) {
                    rule.active = on;
                }
                if !on {
                    self.rec.healed(now_ms);
                }
            }
            Action::Cut(i, on) => {
                let c = &mut self.net.cut[i as usize];
                *c = if on {
                    c.saturating_add(1)
                } else {
                    c.saturating_sub(1)
                };
                if !on {
                    self.rec.healed(now_ms);
                }
            }
            Action::Crash(i) => {
                let i = i as usize;
                if !self.running(i) {
                    return Ok(());
                }
                self.stop(i, HostState::Crashed);
                let name = self.names[i].clone();
                let mut obs = Vec::new();
                for o in 0..self.hosts.len() {
                    if let Some(n) = self.hosts[o].node.as_ref() {
                        if let Some(st) = n.served_status(&name) {
                            self.rec.crashed_still_served(i, o, st, now_ms);
                        }
                        obs.push(o);
                    }
                }
                let g = self.hosts[i].generation;
                self.rec
                    .open_spread(SpreadKind::Crash, i, g, now_ms, obs.into_iter(), false);
            }
            Action::Terminate(i, grace_ms) => {
                let i = i as usize;
                if !self.running(i) {
                    return Ok(());
                }
                if let Some(n) = self.hosts[i].node.as_mut() {
                    // Running, not left: announcing cannot fail.
                    let _ = n
                        .announce_restart(Time(now_ms), std::time::Duration::from_millis(grace_ms));
                }
                // The host runs on until the core says the announcement is finished
                // (`RestartAnnounced`, in `flush`), as the agent does: then `Stopped`.
                self.flush(i, self.now);
            }
            Action::Stopped(i) => {
                let i = i as usize;
                if !self.running(i) {
                    return Ok(());
                }
                // As the agent on its way out: the view as it is now.
                let h = &mut self.hosts[i];
                if let (Some(n), true) = (h.node.as_ref(), h.keeps_data) {
                    h.snapshot = Some(n.snapshot(Time(now_ms)));
                }
                // Then the process is gone, as after a crash (without leaving).
                return self.act(Action::Crash(i as u32));
            }
            Action::Restart(i, keep) => {
                // Due while its restart announcement still spreads: the process exits first.
                let ending = self.hosts[i as usize]
                    .node
                    .as_ref()
                    .is_some_and(|n| !n.has_left() && n.leave_finishes_at().is_some());
                if ending {
                    self.act(Action::Stopped(i))?;
                }
                self.start(i as usize, keep)?;
                // The exact truth after the last restart (a mass restart's recovery).
                self.rec.healed(now_ms);
            }
            Action::Query(i, service) => {
                if self.running(i as usize) {
                    self.ask_query(i as usize, service);
                }
            }
            Action::QueryAnswer(i, life, id) => {
                let i = i as usize;
                if !self.running(i) || self.hosts[i].life != life {
                    return Ok(());
                }
                if let Some(n) = self.hosts[i].node.as_mut() {
                    // Late (past the query's deadline) or unknown: refused, as the agent's.
                    let answer = format!("{} ok", self.names[i]).into_bytes();
                    let _ = n.query_answer(Time(now_ms), id, answer);
                }
                self.flush(i, self.now);
            }
            Action::QueryEnd(id) => self.end_query(id),
            Action::UserEvent(i) => {
                let i = i as usize;
                if !self.running(i) {
                    return Ok(());
                }
                let fired = self.hosts[i].node.as_mut().and_then(|n| {
                    n.user_event(Time(now_ms), "sim-event", vec![b'x'; 64], false)
                        .ok()
                });
                if let Some(e) = fired {
                    self.user_events.fired(e.id, i as u32, now_ms);
                    // Its own delivery came out as an event: the flush records it.
                }
                self.flush(i, self.now);
            }
            Action::Leave(i) => {
                let i = i as usize;
                if !self.running(i) {
                    return Ok(());
                }
                if let Some(n) = self.hosts[i].node.as_mut() {
                    // A node that already left cannot fail to leave; nothing else can go wrong.
                    let _ = n.leave(Time(now_ms));
                }
                // It keeps running until the core says the leave is finished (`flush`
                // stops it then), as the agent does.
                self.flush(i, self.now);
                let obs: Vec<usize> = (0..self.hosts.len())
                    .filter(|&o| o != i && self.running(o))
                    .collect();
                let g = self.hosts[i].generation;
                self.rec
                    .open_spread(SpreadKind::Leave, i, g, now_ms, obs.into_iter(), false);
            }
            Action::Loss(i, egress, ingress) => {
                if let Some(r) = egress {
                    self.net.egress_loss[i as usize] = r;
                }
                if let Some(r) = ingress {
                    self.net.ingress_loss[i as usize] = r;
                }
            }
            Action::Deaf(i, on) => {
                let c = &mut self.net.deaf[i as usize];
                *c = if on {
                    c.saturating_add(1)
                } else {
                    c.saturating_sub(1)
                };
                if !on {
                    self.rec.healed(now_ms);
                }
            }
            Action::Burst(i, enter, good, bad) => {
                let i = i as usize;
                let c = &mut self.burst_bad[i];
                *c = if enter {
                    c.saturating_add(1)
                } else {
                    c.saturating_sub(1)
                };
                self.net.burst_loss[i] = if *c > 0 { bad } else { good };
            }
            Action::Slow(i, d) => self.hosts[i as usize].delay_us = d,
            Action::Pause(i, d) => {
                let h = &mut self.hosts[i as usize];
                h.pause_until = h.pause_until.max(self.now + d);
            }
            Action::CheckFail(i, slots, on) => {
                for s in slots {
                    self.health.set_failing(i as usize, s, on);
                }
            }
        }
        Ok(())
    }

    /// Schedules the check runs of host `i`'s checked services (at a seeded phase each).
    pub(super) fn start_checks(&mut self, i: usize) {
        let life = self.hosts[i].life;
        for slot in 0..self.health.checked.len() {
            let (svc, _, interval, _, _) = self.health.checked[slot].clone();
            if !self.providers[svc].contains(&i) {
                continue;
            }
            let now = Time(self.now_ms());
            if let Some(n) = self.hosts[i].node.as_mut() {
                self.health.start(n, slot, now);
            }
            let mut r = SmallRng::seed_from_u64(
                self.sc.seed
                    ^ 0xC4EC_0000
                    ^ ((i as u64) << 24)
                    ^ (u64::from(life) << 8)
                    ^ slot as u64,
            );
            let phase = r.random_range(0..us(interval).max(1));
            self.push(
                self.now + phase,
                Ev::Check {
                    node: i as u32,
                    life,
                    slot: slot as u16,
                },
            );
        }
    }

    pub(super) fn run_check(&mut self, node: u32, life: u32, slot: u16) {
        let i = node as usize;
        if !self.running(i) || self.hosts[i].life != life {
            return;
        }
        let now = Time(self.now_ms());
        let interval = self.health.checked[slot as usize].2;
        if let Some(n) = self.hosts[i].node.as_mut() {
            self.health.check(n, i, slot as usize, now);
        }
        self.push(self.now + us(interval), Ev::Check { node, life, slot });
        self.after_handle(i);
    }
}
