//! The discrete-event world: N copies of `core::Node` in virtual time.
//!
//! Owns the event queue (ordered by (time in µs, sequence number), so that a run replays
//! byte for byte from its seed), the hosts (running, crashed, left; paused or slow), the
//! application of the scenario's faults, and the feeding of the recorder. Every random
//! choice comes from RNGs seeded by the scenario. Must not read the wall clock for anything
//! but progress and speed figures, and must not decide membership: the core does.

use crate::health::SimHealth;
use crate::measure::{FaultWindow, Recorder, RunResult, Sample, SpreadKind};
use crate::net::{addr_of, index_of, Fate, Net, Rule};
use crate::queue::EventQueue;
use crate::scenario::{FaultKind, Scenario};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use shoal_core::{EventKind, GuardMode, Node, NodeConfig, NodeError, NodeMeta, Service, Time};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SimError {
    #[error("node {node} cannot be created: {source}")]
    Node { node: usize, source: NodeError },
}

/// Where a run is, for progress bars.
#[derive(Clone, Debug)]
pub struct Progress {
    pub virtual_ms: u64,
    pub total_ms: u64,
    pub events: u64,
    pub live: usize,
    pub wall_s: f64,
}

enum Ev {
    Start {
        node: u32,
        keep_data: bool,
    },
    /// The node asked to be woken now (`Node::poll_timeout`).
    Wake {
        node: u32,
        life: u32,
    },
    Deliver {
        node: u32,
        from: u32,
        data: Vec<u8>,
    },
    Act(Action),
    Fault(usize),
    Sample,
    /// Every initial node starts as a member of a formed cluster.
    Form,
    /// A check run of host `node`'s instance of checked service `slot` (`sim::health`).
    Check {
        node: u32,
        life: u32,
        slot: u16,
    },
    /// Host `node` publishes the health its pacing held back.
    Publish {
        node: u32,
        life: u32,
    },
}

#[derive(Clone, Debug)]
enum Action {
    Rule(usize, bool),
    Cut(u32, bool),
    Crash(u32),
    Restart(u32, bool),
    Leave(u32),
    Loss(u32, f64),
    /// Bursty loss: host, enters (true) or leaves one bad period, good and bad loss.
    Burst(u32, bool, f64, f64),
    Slow(u32, u64),
    Pause(u32, u64),
    /// A `check-fail` window of host `.0`'s checked-service slots begins (`true`) or ends.
    CheckFail(u32, Vec<usize>, bool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HostState {
    NotStarted,
    Running,
    Crashed,
    Left,
}

struct Host {
    node: Option<Node>,
    state: HostState,
    life: u32,
    busy_until: u64,
    pause_until: u64,
    delay_us: u64,
    /// The earliest wake-up queued for this life of the node (µs).
    wake: Option<u64>,
    /// What the data directory would hold: known peers at the crash.
    known_peers: Vec<SocketAddr>,
    /// And the served view the agent would have saved (`snapshot.json`).
    snapshot: Option<shoal_core::snapshot::Snapshot>,
    generation: u64,
    /// Track this host's (initial) join node by node.
    track_join: bool,
}

/// One run of a scenario in one guard mode.
pub struct World<'a> {
    sc: &'a Scenario,
    mode: GuardMode,
    now: u64,
    end: u64,
    queue: EventQueue<Ev>,
    hosts: Vec<Host>,
    names: Vec<String>,
    net: Net,
    rng: SmallRng,
    rec: Recorder,
    providers: Vec<Vec<usize>>,
    /// Fault targets resolved before the run (same in every mode).
    targets: Vec<Vec<usize>>,
    windows: Vec<FaultWindow>,
    next_join: usize,
    /// Bad periods in force per host (`Action::Burst`).
    burst_bad: Vec<u32>,
    events: u64,
    /// Reused buffers.
    tx_buf: Vec<(SocketAddr, Vec<u8>)>,
    ev_buf: Vec<shoal_core::Event>,
    /// Services' checks (`[service.check]`), their faults and their measure.
    health: SimHealth,
}

fn us(ms: u64) -> u64 {
    ms.saturating_mul(1000)
}

fn name_index(name: &str) -> Option<usize> {
    name.strip_prefix('n')?.parse().ok()
}

impl<'a> World<'a> {
    pub fn new(sc: &'a Scenario, mode: GuardMode) -> Self {
        let total = sc.total_nodes();
        let providers = sc.providers();
        let targets = plan_targets(sc);
        let series = pick_series(sc, &targets);
        let rec = Recorder::new(
            total,
            sc.nodes,
            sc.measure.from.ms(),
            sc.services.len(),
            series,
        );
        let net = Net::new(
            total,
            sc.network.latency.0.as_micros() as u64,
            sc.network.jitter.0.as_micros() as u64,
            sc.network.loss,
            sc.network.duplicate,
        );
        let step = (sc.nodes / sc.measure.max_join_spreads.max(1)).max(1);
        let hosts = (0..total)
            .map(|i| Host {
                node: None,
                state: HostState::NotStarted,
                life: 0,
                busy_until: 0,
                pause_until: 0,
                delay_us: 0,
                wake: None,
                known_peers: Vec::new(),
                snapshot: None,
                generation: 0,
                track_join: i < sc.nodes && i % step == 0 && sc.measure.max_join_spreads > 0,
            })
            .collect();
        let mut w = World {
            sc,
            mode,
            now: 0,
            end: us(sc.duration.ms()),
            queue: EventQueue::new(),
            hosts,
            names: (0..total).map(|i| format!("n{i}")).collect(),
            net,
            rng: SmallRng::seed_from_u64(sc.seed ^ 0x5EED_0000_0000_0001),
            rec,
            providers,
            targets,
            windows: Vec::new(),
            next_join: sc.nodes,
            burst_bad: vec![0; sc.total_nodes()],
            events: 0,
            tx_buf: Vec::new(),
            ev_buf: Vec::new(),
            health: SimHealth::new(
                total,
                sc.services
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| {
                        s.check.as_ref().map(|c| {
                            (
                                i,
                                s.name.clone(),
                                c.interval.ms().max(100),
                                c.success_before_passing,
                                c.failures_before_critical,
                            )
                        })
                    })
                    .collect(),
            ),
        };
        // Initial starts: seeds at 0, the others spread over the window.
        let mut start_rng = SmallRng::seed_from_u64(sc.seed ^ 0x57A2_7000);
        let spread = us(sc.cluster.start_spread.ms());
        if sc.cluster.formed {
            w.push(0, Ev::Form);
        }
        for i in (0..sc.nodes).filter(|_| !sc.cluster.formed) {
            let at = if i < sc.cluster.seeds || spread == 0 {
                0
            } else {
                start_rng.random_range(0..spread)
            };
            w.push(
                at,
                Ev::Start {
                    node: i as u32,
                    keep_data: false,
                },
            );
        }
        for (i, f) in sc.faults.iter().enumerate() {
            w.push(us(f.at.ms()), Ev::Fault(i));
        }
        w.push(0, Ev::Sample);
        w
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.queue.push(at.max(self.now), ev);
    }

    fn now_ms(&self) -> u64 {
        self.now / 1000
    }

    fn running(&self, i: usize) -> bool {
        self.hosts
            .get(i)
            .map(|h| h.state == HostState::Running)
            .unwrap_or(false)
    }

    /// Runs to the end; calls `progress` every ~0.25 s of wall time.
    pub fn run(mut self, progress: &mut dyn FnMut(&Progress)) -> Result<RunResult, SimError> {
        let wall = Instant::now();
        self.advance(self.end / 1000, wall, progress)?;
        Ok(self.finish(wall))
    }

    /// Processes every event up to `until_ms` (virtual), then stops there.
    pub fn run_until(&mut self, until_ms: u64) -> Result<(), SimError> {
        self.advance(until_ms, Instant::now(), &mut |_| {})
    }

    /// The core of node `i` while it runs (for inspection).
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.hosts.get(i).and_then(|h| h.node.as_ref())
    }

    /// Virtual time now, in ms.
    pub fn now(&self) -> Time {
        Time(self.now_ms())
    }

    fn advance(
        &mut self,
        until_ms: u64,
        wall: Instant,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(), SimError> {
        let until = us(until_ms).min(self.end);
        let mut last_report = 0.0f64;
        while let Some((at, ev)) = self.queue.pop_until(until) {
            self.now = at;
            self.events += 1;
            match ev {
                Ev::Start { node, keep_data } => self.start(node as usize, keep_data)?,
                Ev::Wake { node, life } => {
                    let i = node as usize;
                    if !self.running(i) || self.hosts[i].life != life {
                        continue;
                    }
                    if self.hosts[i].wake == Some(at) {
                        self.hosts[i].wake = None;
                    }
                    if let Some(hold) = self.hold(i) {
                        self.wake_at(i, hold);
                        continue;
                    }
                    let now = Time(self.now_ms());
                    if let Some(n) = self.hosts[i].node.as_mut() {
                        n.handle_timeout(now);
                    }
                    self.after_handle(i);
                }
                Ev::Deliver { node, from, data } => {
                    let i = node as usize;
                    if !self.running(i) {
                        continue;
                    }
                    if self.net.is_cut(i) {
                        self.rec.cut += 1;
                        continue;
                    }
                    if let Some(hold) = self.hold(i) {
                        self.push(hold, Ev::Deliver { node, from, data });
                        continue;
                    }
                    let now = Time(self.now_ms());
                    self.rec.rx(i, data.len(), now.0);
                    if let Some(n) = self.hosts[i].node.as_mut() {
                        n.handle_datagram(now, addr_of(from as usize), &data);
                    }
                    self.after_handle(i);
                }
                Ev::Act(a) => self.act(a)?,
                Ev::Form => self.start_formed()?,
                Ev::Fault(idx) => self.fault(idx),
                Ev::Sample => {
                    self.sample();
                    let next = self.now + us(self.sc.measure.sample_every.ms());
                    self.push(next, Ev::Sample);
                }
                Ev::Check { node, life, slot } => self.run_check(node, life, slot),
                Ev::Publish { node, life } => self.run_publish(node, life),
            }
            if self.events.is_multiple_of(4096) {
                let w = wall.elapsed().as_secs_f64();
                if w - last_report >= 0.25 {
                    last_report = w;
                    progress(&self.progress(w));
                }
            }
        }
        self.now = self.now.max(until);
        progress(&self.progress(wall.elapsed().as_secs_f64()));
        Ok(())
    }

    fn finish(mut self, wall: Instant) -> RunResult {
        let wall_s = wall.elapsed().as_secs_f64();
        let running: Vec<bool> = (0..self.hosts.len()).map(|i| self.running(i)).collect();
        let services = self
            .sc
            .services
            .iter()
            .zip(&self.providers)
            .map(|(s, p)| (s.name.clone(), p.iter().map(|x| *x as u32).collect()))
            .collect();
        let events = self.events;
        let end_ms = self.now_ms();
        let mut windows = std::mem::take(&mut self.windows);
        windows.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        let mut r = self.rec.finish_run(
            end_ms,
            &running,
            self.sc.name.clone(),
            self.mode,
            self.sc.seed,
            windows,
            services,
        );
        r.perf.events = events;
        if !self.health.is_empty() {
            r.health = Some(self.health.outcome());
        }
        r.perf.wall_s = wall_s;
        r.perf.virtual_s_per_wall_s = if wall_s > 0.0 {
            end_ms as f64 / 1000.0 / wall_s
        } else {
            0.0
        };
        r
    }

    fn progress(&self, wall_s: f64) -> Progress {
        Progress {
            virtual_ms: self.now_ms(),
            total_ms: self.end / 1000,
            events: self.events,
            live: self
                .hosts
                .iter()
                .filter(|h| h.state == HostState::Running)
                .count(),
            wall_s,
        }
    }

    /// If the host cannot process now (paused or busy), when it can.
    fn hold(&self, i: usize) -> Option<u64> {
        let h = &self.hosts[i];
        let t = h.pause_until.max(h.busy_until);
        (t > self.now).then_some(t)
    }

    /// Queues a wake-up of node `i` at `at` (µs) unless one as early is queued already.
    fn wake_at(&mut self, i: usize, at: u64) {
        let at = at.max(self.now);
        let h = &mut self.hosts[i];
        if h.wake.is_none_or(|w| at < w) {
            h.wake = Some(at);
            let (node, life) = (i as u32, h.life);
            self.push(at, Ev::Wake { node, life });
        }
    }

    fn after_handle(&mut self, i: usize) {
        let delay = self.hosts[i].delay_us;
        let send_at = if delay > 0 {
            self.hosts[i].busy_until = self.now + delay;
            self.now + delay
        } else {
            self.now
        };
        self.flush(i, send_at);
    }

    fn meta_of(&self, i: usize) -> NodeMeta {
        let mut meta = NodeMeta::default();
        for (s, provs) in self.sc.services.iter().zip(&self.providers) {
            if provs.contains(&i) {
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
        meta.tags.insert("zone".into(), format!("z{}", i % 3));
        meta
    }

    /// Builds node `i`'s core as the agent would on (re)start: config, identity generation,
    /// and on a restart with its data directory, the saved peers and view.
    fn new_node(&mut self, i: usize, keep_data: bool) -> Result<(Node, u64), SimError> {
        let now_ms = self.now_ms();
        let restart = self.hosts[i].state == HostState::Crashed;
        let seeds_n = self.sc.cluster.seeds.min(self.sc.nodes);
        let mut seeds: Vec<SocketAddr> = (0..seeds_n).filter(|s| *s != i).map(addr_of).collect();
        let life = self.hosts[i].life;
        if restart && keep_data {
            // The data directory's known peers: a few of them, picked from the snapshot.
            let known = std::mem::take(&mut self.hosts[i].known_peers);
            let mut r =
                SmallRng::seed_from_u64(self.sc.seed ^ ((i as u64) << 20) ^ u64::from(life));
            for _ in 0..known.len().min(8) {
                let p = known[r.random_range(0..known.len())];
                if !seeds.contains(&p) {
                    seeds.push(p);
                }
            }
        }
        let cfg = NodeConfig {
            name: self.names[i].clone(),
            advertise: addr_of(i),
            cluster_label: String::new(),
            timings: self.sc.lifeguard.apply(self.sc.profile.timings()),
            seeds,
            guard: self.sc.guard.config(self.mode),
            track_suspects: true,
        };
        let generation = (self.hosts[i].generation + 1).max(now_ms + 1);
        let seed =
            self.sc.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (u64::from(life) << 48);
        let mut node = Node::new(cfg, generation, self.meta_of(i), seed, Time(now_ms))
            .map_err(|source| SimError::Node { node: i, source })?;
        let saved = self.hosts[i].snapshot.take();
        if let (true, Some(snap)) = (restart && keep_data, saved) {
            // As the agent does: serve the saved view as `warming` and rejoin through its peers.
            // A snapshot the core refuses (too old) only seeds the rejoin, which is fine here.
            let _ = node.restore(Time(now_ms), snap, now_ms);
        }
        Ok((node, generation))
    }

    fn start(&mut self, i: usize, keep_data: bool) -> Result<(), SimError> {
        if self.running(i) || self.hosts[i].state == HostState::Left {
            return Ok(());
        }
        let (node, generation) = self.new_node(i, keep_data)?;
        self.run_node(i, node, generation, true)
    }

    /// `[cluster] formed`: every initial node starts now, already holding every other one
    /// (members and records), as after a full state transfer.
    fn start_formed(&mut self) -> Result<(), SimError> {
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
    fn run_node(
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

    /// Collects a node's outputs: timers into the queue, datagrams into the network, events
    /// into the recorder.
    fn flush(&mut self, i: usize, send_at: u64) {
        let mut timeout = None;
        let mut txs = std::mem::take(&mut self.tx_buf);
        let mut evs = std::mem::take(&mut self.ev_buf);
        if let Some(n) = self.hosts[i].node.as_mut() {
            timeout = n.poll_timeout();
            while let Some(tx) = n.poll_transmit() {
                txs.push((tx.dst, tx.data));
            }
            while let Some(e) = n.poll_event() {
                evs.push(e);
            }
        }
        if let Some(deadline) = timeout {
            self.wake_at(i, us(deadline.0));
        }
        let t_ms = send_at / 1000;
        for (dst, data) in txs.drain(..) {
            self.rec.tx(i, data.len(), t_ms);
            let Some(j) = index_of(dst).filter(|j| *j < self.hosts.len()) else {
                self.rec.lost += 1;
                continue;
            };
            match self.net.fate(i, j, &mut self.rng) {
                Fate::Lost => self.rec.lost += 1,
                Fate::Partitioned => self.rec.partitioned += 1,
                Fate::Cut => self.rec.cut += 1,
                Fate::Deliver(d1, d2) => {
                    if let Some(d2) = d2 {
                        self.rec.duplicated += 1;
                        self.push(
                            send_at + d2,
                            Ev::Deliver {
                                node: j as u32,
                                from: i as u32,
                                data: data.clone(),
                            },
                        );
                    }
                    self.push(
                        send_at + d1,
                        Ev::Deliver {
                            node: j as u32,
                            from: i as u32,
                            data,
                        },
                    );
                }
            }
        }
        self.tx_buf = txs;
        let now_ms = self.now_ms();
        for e in evs.drain(..) {
            match &e.kind {
                EventKind::Member {
                    previous, member, ..
                } => {
                    let Some(x) = name_index(&member.name).filter(|x| *x < self.hosts.len()) else {
                        continue;
                    };
                    let st = self.hosts[x].state;
                    self.rec.member_event(
                        i,
                        x,
                        *previous,
                        member.status,
                        member.generation,
                        now_ms,
                        st == HostState::Running,
                        st == HostState::Crashed,
                    );
                }
                EventKind::Guard(tr) => self.rec.guard_event(i, tr, now_ms),
                EventKind::Local(_) | EventKind::Health(_) => {}
            }
        }
        self.ev_buf = evs;
        if self.rec.wants_exact_check(now_ms) {
            let running: Vec<bool> = self
                .hosts
                .iter()
                .map(|h| h.state == HostState::Running)
                .collect();
            self.rec.check_exact(now_ms, &running, true);
        }
    }

    fn stop(&mut self, i: usize, state: HostState) {
        let now_ms = self.now_ms();
        let h = &mut self.hosts[i];
        if let Some(n) = h.node.take() {
            h.known_peers = n.known_peers();
            h.snapshot = Some(n.snapshot(now_ms));
            h.generation = h.generation.max(n.identity().generation());
        }
        h.state = state;
        h.life += 1;
        h.wake = None;
        h.busy_until = 0;
        h.pause_until = 0;
        self.rec.node_down(i, now_ms);
        self.rec.close_observer(i, now_ms);
        self.rec.close_subject(i, now_ms);
        self.rec.close_spread(i, SpreadKind::Join, now_ms);
    }

    fn act(&mut self, a: Action) -> Result<(), SimError> {
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
            Action::Restart(i, keep) => {
                self.start(i as usize, keep)?;
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
                self.flush(i, self.now);
                self.stop(i, HostState::Left);
                let obs: Vec<usize> = (0..self.hosts.len()).filter(|&o| self.running(o)).collect();
                let g = self.hosts[i].generation;
                self.rec
                    .open_spread(SpreadKind::Leave, i, g, now_ms, obs.into_iter(), false);
            }
            Action::Loss(i, rate) => self.net.egress_loss[i as usize] = rate,
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
    fn start_checks(&mut self, i: usize) {
        let life = self.hosts[i].life;
        for slot in 0..self.health.checked.len() {
            let (svc, _, interval, _, _) = self.health.checked[slot].clone();
            if !self.providers[svc].contains(&i) {
                continue;
            }
            self.health.start(i, slot);
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

    fn run_check(&mut self, node: u32, life: u32, slot: u16) {
        let i = node as usize;
        if !self.running(i) || self.hosts[i].life != life {
            return;
        }
        let now = Time(self.now_ms());
        let interval = self.health.checked[slot as usize].2;
        let next = match self.hosts[i].node.as_mut() {
            Some(n) => self.health.check(n, i, slot as usize, now),
            None => None,
        };
        self.push(self.now + us(interval), Ev::Check { node, life, slot });
        if let Some(t) = next {
            self.push(us(t.0), Ev::Publish { node, life });
        }
        self.after_handle(i);
    }

    fn run_publish(&mut self, node: u32, life: u32) {
        let i = node as usize;
        if !self.running(i) || self.hosts[i].life != life {
            return;
        }
        let now = Time(self.now_ms());
        if let Some(n) = self.hosts[i].node.as_mut() {
            // A later due time is scheduled by the check that offered it.
            let _ = self.health.publish(n, i, now);
        }
        self.after_handle(i);
    }

    fn at(&mut self, at: u64, a: Action) {
        self.push(at, Ev::Act(a));
    }

    fn fault(&mut self, idx: usize) {
        let f = self.sc.faults[idx].clone();
        let t0 = self.now;
        let dur = f.duration.map(|d| us(d.ms()));
        let end = dur.map(|d| t0 + d);
        let mut targets = self.targets[idx].clone();
        let total = self.hosts.len();
        let mut window_end = end.unwrap_or(self.end).min(self.end);
        match f.kind {
            FaultKind::Partition => {
                let mut group = vec![u16::MAX; total];
                match &f.groups {
                    Some(gs) => {
                        for g in group.iter_mut() {
                            *g = gs.len() as u16;
                        }
                        for (gi, members) in gs.iter().enumerate() {
                            for m in members {
                                if let Some(g) = group.get_mut(*m) {
                                    *g = gi as u16;
                                }
                            }
                        }
                    }
                    None => {
                        for g in group.iter_mut() {
                            *g = 1;
                        }
                        for m in &targets {
                            group[*m] = 0;
                        }
                    }
                }
                // The first group is the cut-off side; with `oneway` (the first group's
                // datagrams to the others are dropped) the others are: they hear nothing.
                let side: Vec<usize> = (0..total)
                    .filter(|i| (group[*i] == 0) != f.oneway)
                    .collect();
                self.rec.mark_cut_side(&side);
                let r = self.net.rules.len();
                self.net.rules.push(Rule {
                    group,
                    oneway: f.oneway,
                    active: false,
                });
                self.at(t0, Action::Rule(r, true));
                if let Some(e) = end {
                    self.at(e, Action::Rule(r, false));
                }
            }
            FaultKind::Isolate => {
                self.rec.mark_cut_side(&targets);
                for &i in &targets {
                    self.at(t0, Action::Cut(i as u32, true));
                    if let Some(e) = end {
                        self.at(e, Action::Cut(i as u32, false));
                    }
                }
            }
            FaultKind::Flap => {
                let on = us(f.on.map(|d| d.ms()).unwrap_or(1000)).max(1);
                let off = us(f.off.map(|d| d.ms()).unwrap_or(1000)).max(1);
                let stop = end.unwrap_or(self.end);
                self.rec.mark_cut_side(&targets);
                let mut t = t0;
                while t < stop {
                    let back = (t + off).min(stop);
                    for &i in &targets {
                        self.at(t, Action::Cut(i as u32, true));
                        self.at(back, Action::Cut(i as u32, false));
                    }
                    t = back + on;
                }
            }
            FaultKind::Crash => {
                for &i in &targets {
                    self.at(t0, Action::Crash(i as u32));
                    if let Some(e) = end {
                        self.at(e, Action::Restart(i as u32, f.keep_data));
                    }
                }
            }
            FaultKind::RollingRestart => {
                let every = us(f.every.map(|d| d.ms()).unwrap_or(10_000));
                let down = us(f.down.map(|d| d.ms()).unwrap_or(5_000));
                for (k, &i) in targets.iter().enumerate() {
                    let t = t0 + every * k as u64;
                    self.at(t, Action::Crash(i as u32));
                    self.at(t + down, Action::Restart(i as u32, f.keep_data));
                }
                window_end = (t0 + every * targets.len() as u64).min(self.end);
            }
            FaultKind::Leave => {
                for &i in &targets {
                    self.at(t0, Action::Leave(i as u32));
                }
                window_end = t0;
            }
            FaultKind::Join => {
                let count = f.count.unwrap_or(1);
                targets = (self.next_join..(self.next_join + count).min(total)).collect();
                self.next_join += count;
                for &i in &targets {
                    self.push(
                        t0,
                        Ev::Start {
                            node: i as u32,
                            keep_data: false,
                        },
                    );
                }
                window_end = t0;
            }
            FaultKind::Loss => {
                let rate = f.rate.unwrap_or(0.0);
                for &i in &targets {
                    self.at(t0, Action::Loss(i as u32, rate));
                    if let Some(e) = end {
                        self.at(e, Action::Loss(i as u32, 0.0));
                    }
                }
            }
            FaultKind::Bursty => {
                let good = f.good_loss.unwrap_or(0.0);
                let bad = f.bad_loss.unwrap_or(0.0);
                let burst = crate::bursty::Burst {
                    good_for_us: f.good_for.map(|d| us(d.ms())),
                    bad_for_us: us(f.bad_for.map(|d| d.ms()).unwrap_or(0)),
                    storm_every_us: f.storm_every.map(|d| us(d.ms())),
                    storm_fraction: f.storm_fraction.unwrap_or(0.0),
                };
                let stop = end.unwrap_or(self.end);
                let seed = self.sc.seed ^ (0xB075_7000 + idx as u64);
                for &i in &targets {
                    self.at(t0, Action::Burst(i as u32, false, good, bad));
                }
                for s in burst.schedule(&targets, t0, stop, seed) {
                    self.at(s.at_us, Action::Burst(s.host as u32, s.enter, good, bad));
                }
                for &i in &targets {
                    self.at(stop, Action::Burst(i as u32, false, 0.0, 0.0));
                }
            }
            FaultKind::Slow => {
                let d = us(f.delay.map(|d| d.ms()).unwrap_or(0));
                for &i in &targets {
                    self.at(t0, Action::Slow(i as u32, d));
                    if let Some(e) = end {
                        self.at(e, Action::Slow(i as u32, 0));
                    }
                }
            }
            FaultKind::Pause => {
                for &i in &targets {
                    self.at(t0, Action::Pause(i as u32, dur.unwrap_or(0)));
                }
            }
            FaultKind::CheckFail => {
                for &i in &targets {
                    let slots: Vec<usize> = (0..self.health.checked.len())
                        .filter(|&s| {
                            let (svc, name, ..) = &self.health.checked[s];
                            self.providers[*svc].contains(&i)
                                && f.service.as_ref().is_none_or(|n| n == name)
                        })
                        .collect();
                    self.at(t0, Action::CheckFail(i as u32, slots.clone(), true));
                    if let Some(e) = end {
                        self.at(e, Action::CheckFail(i as u32, slots, false));
                    }
                }
            }
        }
        let kind = serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        self.windows.push(FaultWindow {
            label: f.label.clone().unwrap_or_else(|| kind.clone()),
            kind,
            start_s: t0 as f64 / 1e6,
            end_s: window_end as f64 / 1e6,
            nodes: targets.len(),
        });
    }

    fn sample(&mut self) {
        let now_ms = self.now_ms();
        let n = self.hosts.len();
        let running: Vec<bool> = (0..n).map(|i| self.running(i)).collect();
        let live = running.iter().filter(|r| **r).count() as u32;
        let sizes: Vec<u32> = (0..n)
            .filter(|&i| running[i])
            .map(|i| self.rec.serving[i] + 1)
            .collect();
        let series: Vec<Option<u32>> = self
            .rec
            .series_nodes()
            .iter()
            .map(|(i, _)| {
                let i = *i as usize;
                running[i].then(|| self.rec.serving[i] + 1)
            })
            .collect();

        // No-provider check: what each consumer's `services()` would list.
        let mut np_nodes = 0u32;
        if self.rec.in_window(now_ms) && now_ms > 0 {
            let step = self.sc.measure.sample_every.ms();
            let live_svcs: Vec<(usize, Vec<usize>)> = self
                .providers
                .iter()
                .enumerate()
                .map(|(s, p)| {
                    (
                        s,
                        p.iter()
                            .copied()
                            .filter(|x| running[*x])
                            .collect::<Vec<_>>(),
                    )
                })
                .filter(|(_, p)| !p.is_empty())
                .collect();
            let mut missing: Vec<(usize, usize)> = Vec::new();
            for o in 0..n {
                let Some(node) = self.hosts[o].node.as_ref() else {
                    continue;
                };
                let mut any = false;
                for (s, _) in &live_svcs {
                    let sname = &self.sc.services[*s].name;
                    let has = self.providers[*s].iter().any(|p| {
                        node.member(&self.names[*p])
                            .map(|m| {
                                m.status.is_serving() && m.services.iter().any(|x| &x.name == sname)
                            })
                            .unwrap_or(false)
                    });
                    if !has {
                        missing.push((o, *s));
                        any = true;
                    }
                }
                if any {
                    np_nodes += 1;
                }
            }
            for (o, s) in missing {
                self.rec.no_provider(o, s, step);
            }
            if !self.health.is_empty() {
                let live: Vec<bool> = self
                    .health
                    .checked
                    .iter()
                    .map(|c| self.providers[c.0].iter().any(|p| running[*p]))
                    .collect();
                for o in 0..n {
                    if let Some(node) = self.hosts[o].node.as_ref() {
                        self.health.sample(o, node, &live, step);
                    }
                }
            }
        }

        // Restarts may change no served status: poll the observers that have not seen them.
        for (x, generation, unseen) in self.rec.pollable() {
            let name = &self.names[x];
            let mut hits = Vec::new();
            for o in unseen {
                let Some(node) = self.hosts[o].node.as_ref() else {
                    continue;
                };
                let ok = node
                    .truth()
                    .get(name)
                    .map(|m| m.id.generation() >= generation && m.state.is_active())
                    .unwrap_or(false);
                if ok {
                    hits.push(o);
                }
            }
            for o in hits {
                self.rec.polled_join(x, o, generation, now_ms);
            }
        }

        self.rec.check_exact(now_ms, &running, true);
        self.rec.sample(
            Sample {
                t_ms: now_ms,
                live,
                sizes,
                series,
                no_provider_nodes: np_nodes,
            },
            &running,
        );
    }
}

/// Resolves every fault's nodes before the run, walking the timeline with the set of nodes
/// expected to run (crashes for good and leaves remove, joins add): the choice is the same in
/// every mode.
fn plan_targets(sc: &Scenario) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..sc.faults.len()).collect();
    order.sort_by_key(|&i| (sc.faults[i].at, i));
    let mut alive: Vec<bool> = (0..sc.total_nodes()).map(|i| i < sc.nodes).collect();
    let mut next_join = sc.nodes;
    let mut out = vec![Vec::new(); sc.faults.len()];
    for i in order {
        let f = &sc.faults[i];
        let eligible: Vec<usize> = (0..alive.len()).filter(|&x| alive[x]).collect();
        let sel = match f.kind {
            FaultKind::Join => {
                let c = f.count.unwrap_or(1);
                let v: Vec<usize> = (next_join..(next_join + c).min(alive.len())).collect();
                next_join += c;
                for x in &v {
                    alive[*x] = true;
                }
                v
            }
            FaultKind::Partition if f.groups.is_some() => {
                let mut v: Vec<usize> = f.groups.iter().flatten().flatten().copied().collect();
                v.sort_unstable();
                v.dedup();
                v
            }
            _ => {
                let has_sel = f.node.is_some()
                    || f.nodes.is_some()
                    || f.fraction.is_some()
                    || f.count.is_some();
                let eligible: Vec<usize> = if f.kind == FaultKind::CheckFail {
                    let p = sc.check_providers(f);
                    eligible.into_iter().filter(|x| p.contains(x)).collect()
                } else {
                    eligible
                };
                if !has_sel
                    && matches!(
                        f.kind,
                        FaultKind::Loss
                            | FaultKind::Bursty
                            | FaultKind::RollingRestart
                            | FaultKind::CheckFail
                    )
                {
                    eligible.clone()
                } else {
                    sc.select(i, &eligible)
                }
            }
        };
        match f.kind {
            FaultKind::Crash if f.duration.is_none() => sel.iter().for_each(|x| alive[*x] = false),
            FaultKind::Leave => sel.iter().for_each(|x| alive[*x] = false),
            _ => {}
        }
        out[i] = sel;
    }
    out
}

/// Which nodes get a full served-view-size series: watched ones, one per fault, seeds,
/// then evenly spread others.
fn pick_series(sc: &Scenario, targets: &[Vec<usize>]) -> Vec<(u32, String)> {
    let want = sc.measure.series_nodes.max(sc.measure.watch.len());
    let mut out: Vec<(u32, String)> = Vec::new();
    let add = |out: &mut Vec<(u32, String)>, i: usize, role: String| {
        if i < sc.total_nodes() && !out.iter().any(|(x, _)| *x as usize == i) {
            out.push((i as u32, role));
        }
    };
    for &w in &sc.measure.watch {
        add(&mut out, w, "watched".into());
    }
    for (fi, f) in sc.faults.iter().enumerate() {
        if out.len() >= want {
            break;
        }
        let kind = serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        if let Some(&t) = targets[fi].first() {
            add(&mut out, t, format!("{kind} target"));
        }
        if f.kind == FaultKind::Partition {
            if let Some(o) = (0..sc.nodes).find(|x| !targets[fi].contains(x)) {
                add(&mut out, o, "other side".into());
            }
        }
    }
    add(&mut out, 0, "seed".into());
    let mut k = 1;
    while out.len() < want.min(sc.total_nodes()) && k < 10_000 {
        let i = (k * sc.nodes) / (want + 1);
        add(&mut out, i, "node".into());
        k += 1;
        if k > want * 4 {
            break;
        }
    }
    out.truncate(want.max(1));
    out
}
