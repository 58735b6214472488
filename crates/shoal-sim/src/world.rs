//! The discrete-event world: N copies of `core::Node` in virtual time.
//!
//! Owns the event queue (ordered by (time in µs, sequence number), so that a run replays
//! byte for byte from its seed), the hosts (running, crashed, left; paused or slow), the
//! application of the scenario's faults, and the feeding of the recorder. Every random
//! choice comes from RNGs seeded by the scenario. Must not read the wall clock for anything
//! but progress and speed figures, and must not decide membership: the core does.
//!
//! This file holds the world, its event loop and the flush of a node's outputs; its parts
//! are child modules: `world_hosts` (building, starting, stopping nodes; actions; checks),
//! `world_faults` (faults into actions, targets planned before the run) and `world_sample`
//! (the periodic sample of the served views).

use crate::health::SimHealth;
use crate::measure::{FaultWindow, Recorder, RunResult, Sample, SpreadKind};
use crate::net::{addr_of, index_of, Fate, Net, Rule};
use crate::queue::EventQueue;
use crate::scenario::{Direction, FaultKind, Scenario};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use shoal_core::{
    EventKind, GuardMode, LocalEvent, Node, NodeConfig, NodeError, NodeMeta, Service, Time,
};
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
}

#[derive(Clone, Debug)]
enum Action {
    Rule(usize, bool),
    Cut(u32, bool),
    Crash(u32),
    /// As on SIGTERM: the node announces a restart with this grace (ms), and stops once the
    /// core says the announcement is finished (`Stopped`).
    Terminate(u32, u64),
    /// The host's restart announcement is finished (the core's `RestartAnnounced`): the
    /// process saves its snapshot and is gone, as the agent after SIGTERM.
    Stopped(u32),
    Restart(u32, bool),
    Leave(u32),
    /// Loss on host `.0`: egress and ingress rates (`None`: unchanged).
    Loss(u32, Option<f64>, Option<f64>),
    /// An ingress-only cut of host `.0` begins (`true`) or ends.
    Deaf(u32, bool),
    /// Bursty loss: host, enters (true) or leaves one bad period, good and bad loss.
    Burst(u32, bool, f64, f64),
    Slow(u32, u64),
    Pause(u32, u64),
    /// A `check-fail` window of host `.0`'s checked-service slots begins (`true`) or ends.
    CheckFail(u32, Vec<usize>, bool),
    /// Host `.0` fires a user event.
    UserEvent(u32),
    /// Host `.0` asks a query (of the providers of service `.1`, or of everyone).
    Query(u32, Option<String>),
    /// Host `.0`'s handler (in life `.1`) is done with query `.2`: its answer.
    QueryAnswer(u32, u32, u64),
    /// Query `.0` reached its timeout: the origin's last count.
    QueryEnd(u64),
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
    /// What the data directory would hold (`snapshot.json`): the last snapshot the node
    /// handed out (`Node::poll_snapshot`, every 10 s while its view changes), as the agent
    /// saves it. A crash keeps it as it was, up to 10 s stale; a graceful leave saves one.
    snapshot: Option<shoal_core::Snapshot>,
    /// Some fault restarts this host with its data directory: only then are its snapshots
    /// kept (anyone else's would be discarded unread, so they are not even taken).
    keeps_data: bool,
    generation: u64,
    /// Track this host's (initial) join node by node.
    track_join: bool,
    /// What the data directory's `registrations.json` holds: the node's tags and services as
    /// last changed through the API, and the config file's (`agent::registrations`).
    registrations: Option<(NodeMeta, NodeMeta)>,
    /// The apps on this host have registered their services (`registered = "api"`): once.
    apps_registered: bool,
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
    /// One context for every node of the run: a name, identity or record that all of them
    /// decode is held once (`shoal_core::Shared`).
    shared: std::sync::Arc<shoal_core::Shared>,
    net: Net,
    rng: SmallRng,
    rec: Recorder,
    /// User events fired and their deliveries (`measure_events`).
    user_events: crate::measure_events::UserEvents,
    /// Queries asked and their counts (`measure_queries`), and each one's nodes' lives when
    /// it was asked (`u32::MAX`: not running) and its service filter.
    queries: crate::measure_queries::Queries,
    query_lives: BTreeMap<u64, (Vec<u32>, Option<String>)>,
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
    /// Coordinates sent by nodes that stopped (`Stats::coordinates_sent` of their lives).
    coordinates_sent_stopped: u64,
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
        let keeps_data = keeps_data(sc, &targets);
        let hosts = (0..total)
            .map(|i| Host {
                node: None,
                state: HostState::NotStarted,
                life: 0,
                busy_until: 0,
                pause_until: 0,
                delay_us: 0,
                wake: None,
                snapshot: None,
                keeps_data: keeps_data[i],
                generation: 0,
                track_join: i < sc.nodes && i % step == 0 && sc.measure.max_join_spreads > 0,
                registrations: None,
                apps_registered: false,
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
            shared: shoal_core::Shared::new(sc.seed ^ 0x5A4E_D000_0000_0001),
            net,
            rng: SmallRng::seed_from_u64(sc.seed ^ 0x5EED_0000_0000_0001),
            rec,
            user_events: Default::default(),
            queries: Default::default(),
            query_lives: BTreeMap::new(),
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
            coordinates_sent_stopped: 0,
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
                    if self.net.hears_nothing(i) {
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
        let live: Vec<(usize, &Node)> = self
            .hosts
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.node.as_ref().map(|n| (i, n)))
            .collect();
        r.coordinates = crate::measure_coords::figures(&live, 2 * self.net.latency_us);
        r.traffic.coordinate_datagrams = self.coordinates_sent_stopped
            + self
                .hosts
                .iter()
                .filter_map(|h| h.node.as_ref())
                .map(|n| n.stats().coordinates_sent)
                .sum::<u64>();
        if !self.user_events.is_empty() {
            let bytes: u64 = self
                .hosts
                .iter()
                .filter_map(|h| h.node.as_ref())
                .map(|n| n.stats().fleet_tx_bytes)
                .sum();
            // Events are fired after the measurement starts: their bytes fall in its window.
            let window_ms = end_ms.saturating_sub((r.measure_from_s * 1000.0) as u64);
            let tx_p50 = r.traffic.tx_bytes_per_s.p50;
            r.user_events = Some(
                self.user_events
                    .finish(&running, bytes, tx_p50, end_ms, window_ms),
            );
        }
        if !self.queries.is_empty() {
            let bytes: u64 = self
                .hosts
                .iter()
                .filter_map(|h| h.node.as_ref())
                .map(|n| n.stats().fleet_tx_bytes)
                .sum();
            let per_node = bytes as f64 / self.hosts.len().max(1) as f64;
            r.queries = Some(std::mem::take(&mut self.queries).finish(per_node));
        }
        if !self.health.is_empty() {
            // What the nodes still running published (stopped ones were counted then).
            let live: u64 = self
                .hosts
                .iter()
                .filter_map(|h| h.node.as_ref())
                .map(|n| n.stats().health_published)
                .sum();
            let mut h = self.health.outcome();
            h.published += live;
            r.health = Some(h);
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

    /// Collects a node's outputs: timers into the queue, datagrams into the network, events
    /// into the recorder.
    fn flush(&mut self, i: usize, send_at: u64) {
        let mut timeout = None;
        let mut txs = std::mem::take(&mut self.tx_buf);
        let mut evs = std::mem::take(&mut self.ev_buf);
        let now_ms = self.now_ms();
        let h = &mut self.hosts[i];
        if let Some(n) = h.node.as_mut() {
            if h.keeps_data {
                if let Some(snap) = n.poll_snapshot(Time(now_ms)) {
                    h.snapshot = Some(snap);
                }
            }
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
        let mut leave_finished = false;
        let mut restart_announced = false;
        let mut member_changed = false;
        for e in evs.drain(..) {
            match &e.kind {
                EventKind::Member {
                    previous, member, ..
                } => {
                    let Some(x) = name_index(&member.name).filter(|x| *x < self.hosts.len()) else {
                        continue;
                    };
                    let st = self.hosts[x].state;
                    member_changed = true;
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
                EventKind::Local(LocalEvent::LeaveFinished) => leave_finished = true,
                EventKind::Local(LocalEvent::RestartAnnounced) => restart_announced = true,
                EventKind::Local(_) | EventKind::Health(_) | EventKind::Outlier(_) => {}
                EventKind::UserEvent(u) => self.user_events.delivered(u.id, i as u32, now_ms),
                EventKind::Query(q) if q.answering => {
                    let answer = Action::QueryAnswer(i as u32, self.hosts[i].life, q.id);
                    let at = self.now + us(crate::measure_queries::HANDLER_MS);
                    self.push(at, Ev::Act(answer));
                }
                EventKind::Query(_) => {}
            }
        }
        self.ev_buf = evs;
        self.read_queries(i, now_ms);
        if member_changed {
            self.rec.view_settled(i);
        }
        if leave_finished {
            // The core says the leave is done: the process exits, as the agent's does.
            self.stop(i, HostState::Left);
        }
        if restart_announced {
            // Likewise after a restart announcement; the process exits without leaving.
            let _ = self.act(Action::Stopped(i as u32));
        }
        if self.rec.wants_exact_check(now_ms) {
            let running: Vec<bool> = self
                .hosts
                .iter()
                .map(|h| h.state == HostState::Running)
                .collect();
            self.rec.check_exact(now_ms, &running, true);
        }
    }
}

impl World<'_> {
    /// After an input of node `i`: the status of each query it asked that is still open, as
    /// the agent's API reads it after each flush.
    fn read_queries(&mut self, i: usize, now_ms: u64) {
        if self.queries.is_empty() {
            return;
        }
        for id in self.queries.open_of(i as u32) {
            let st = self.hosts[i]
                .node
                .as_mut()
                .and_then(|n| n.query_status(Time(now_ms), id));
            if let Some(st) = st {
                self.queries.status(now_ms, st);
            }
        }
    }

    /// Asks a query of host `i` (the API's `POST /v1/query/NAME`).
    fn ask_query(&mut self, i: usize, service: Option<String>) {
        let now_ms = self.now_ms();
        let filter = shoal_core::QueryFilter {
            service: service.clone(),
            ..Default::default()
        };
        let name = crate::measure_queries::QUERY_NAME;
        let Some(st) = self.hosts[i].node.as_mut().and_then(|n| {
            n.query(Time(now_ms), name, b"?".to_vec(), filter, None)
                .ok()
        }) else {
            return;
        };
        let (id, timeout_ms) = (st.id, st.timeout_ms);
        let lives = self
            .hosts
            .iter()
            .map(|h| match h.state {
                HostState::Running => h.life,
                _ => u32::MAX,
            })
            .collect();
        self.query_lives.insert(id, (lives, service));
        self.queries.asked(i as u32, now_ms, st);
        self.push(self.now + us(timeout_ms + 1), Ev::Act(Action::QueryEnd(id)));
        self.flush(i, self.now);
    }

    /// Query `id` timed out at its origin: the last count, and who could have answered
    /// (matched, and ran from the query to now without a restart).
    fn end_query(&mut self, id: u64) {
        let Some((from, _, _)) = self.queries.fired_ms(id) else {
            return;
        };
        self.read_queries(from as usize, self.now_ms());
        let (lives, service) = self.query_lives.remove(&id).unwrap_or_default();
        // The providers of the service filtered on (as configured), or everyone.
        let providers = service.map(|name| {
            let k = self.sc.services.iter().position(|s| s.name == name);
            k.and_then(|k| self.providers.get(k))
                .cloned()
                .unwrap_or_default()
        });
        let reachable = (0..self.hosts.len())
            .filter(|j| {
                lives
                    .get(*j)
                    .is_some_and(|l| *l != u32::MAX && *l == self.hosts[*j].life)
                    && self.running(*j)
                    && providers.as_ref().is_none_or(|p| p.contains(j))
            })
            .count();
        self.queries.reachable(id, reachable);
    }
}

// The world's parts, one concern each (child modules: they reach the world's fields).
#[path = "world_faults.rs"]
mod faults;
#[path = "world_hosts.rs"]
mod hosts;
use faults::{keeps_data, pick_series, plan_targets};
#[path = "world_sample.rs"]
mod sample;
