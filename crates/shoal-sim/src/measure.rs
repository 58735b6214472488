//! Measures of one run and the JSON result they produce.
//!
//! Owns the recorder the world feeds (datagrams, served-view changes, guard transitions,
//! crashes, leaves, samples) and `RunResult`, the serialisable outcome: spread times of joins,
//! leaves and crashes (50/99/100% of live nodes), false downs, stale seconds, no-provider
//! seconds, traffic per node, served view size over time and guard changes. Memory stays
//! bounded at 10k nodes: per-node counters, a few full series, aggregates for the rest.
//! Must not drive nodes or draw randomness.
//!
//! What it learns of a node is what the agent's API shows: the served-view change events
//! (the watch stream's `member` events: false downs are live members *served* `down`; the
//! `declared` count adds those served `held`, the API's word for "SWIM declared it down, the
//! guard still serves it"), guard transitions (its `guard` events) and, at samples, the
//! served view itself (`Node::member`/`services`, as `/v1/agent/members` and the catalog read
//! it). The world's ground truth (which hosts really run) is only what those are compared
//! against.
//!
//! The result types live in `result` (re-exported here); `finish_run`, which turns the counts
//! into a `RunResult`, in the child module `measure_finish`.

pub use crate::result::*;
use shoal_core::{GuardMode, GuardState, GuardTransition, ServedStatus};
use std::collections::BTreeMap;

/// Most per-spread entries kept in the result (aggregates cover all of them).
const MAX_SPREADS_LISTED: usize = 300;
/// Most pooled latencies kept for CDFs and interval durations.
const MAX_POOL: usize = 1_000_000;
/// Most guard transitions listed one by one.
const MAX_GUARD_LISTED: usize = 200;

struct Spread {
    kind: SpreadKind,
    subject: u32,
    generation: u64,
    at_ms: u64,
    target: Vec<u64>,
    seen: Vec<u64>,
    /// (observer, ms after `at`) in the order seen.
    sightings: Vec<(u32, u32)>,
    /// Also poll observers at samples (a restart may change no served status).
    poll: bool,
    open: bool,
}

fn bit_get(v: &[u64], i: usize) -> bool {
    v.get(i / 64)
        .map(|w| w >> (i % 64) & 1 == 1)
        .unwrap_or(false)
}

fn bit_set(v: &mut [u64], i: usize) {
    if let Some(w) = v.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IvKind {
    /// A live node served `down`.
    ServedDown,
    /// A live node SWIM declared down, served `held` by the guard.
    HeldDown,
    /// A crashed node still served alive or suspect.
    StaleServed,
    /// A crashed node served `held`.
    StaleHeld,
}

#[derive(Default)]
struct IntervalAgg {
    count: u64,
    total_ms: u64,
    max_ms: u64,
    pool: Vec<u32>,
}

impl IntervalAgg {
    fn add(&mut self, ms: u64) {
        self.count += 1;
        self.total_ms += ms;
        self.max_ms = self.max_ms.max(ms);
        if self.pool.len() < MAX_POOL {
            self.pool.push(ms.min(u32::MAX as u64) as u32);
        }
    }

    fn stats(&self) -> IntervalStats {
        let mut p = self.pool.clone();
        p.sort_unstable();
        IntervalStats {
            count: self.count,
            total_s: self.total_ms as f64 / 1000.0,
            mean_s: if self.count > 0 {
                self.total_ms as f64 / 1000.0 / self.count as f64
            } else {
                0.0
            },
            p50_s: quantile_u32(&p, 0.5) / 1000.0,
            p99_s: quantile_u32(&p, 0.99) / 1000.0,
            max_s: self.max_ms as f64 / 1000.0,
        }
    }
}

/// Per kind of spread: count, complete, and the t50 / t99 / t100 of each.
type KindAcc = (u32, u32, Vec<f64>, Vec<f64>, Vec<f64>);

/// One sample the world takes every `sample_every`.
pub struct Sample {
    pub t_ms: u64,
    pub live: u32,
    pub sizes: Vec<u32>,
    pub series: Vec<Option<u32>>,
    pub no_provider_nodes: u32,
}

/// Counts the world feeds in while it runs.
pub struct Recorder {
    from_ms: u64,
    n: usize,
    initial: usize,
    pub tx_msgs: Vec<u64>,
    pub tx_bytes: Vec<u64>,
    pub rx_bytes: Vec<u64>,
    alive_ms: Vec<u64>,
    alive_since: Vec<Option<u64>>,
    /// Members other than itself each node serves as serving.
    pub serving: Vec<u32>,
    guard_state: Vec<GuardState>,
    tripped: Vec<bool>,
    full_view_at: Vec<Option<u64>>,
    /// Served view sizes (members serving, itself included) any node settled on after an
    /// input: Rapid's "distinct cluster sizes" (ATC 2018: Rapid 4, memberlist 1,858 when
    /// 2,000 processes bootstrap).
    sizes_seen: Vec<bool>,
    /// Fewest members (itself included) a running node that had had the full view served
    /// after `from` (the guard's promise during a mass restart: never fewer than that).
    min_served_after_full: Option<u32>,
    pub last_initial_start_ms: u64,
    spreads: Vec<Spread>,
    open_spreads: BTreeMap<(u32, SpreadKind), usize>,
    intervals: BTreeMap<(u32, u32), (IvKind, u64)>,
    open_counts: [u32; 4],
    served_down: IntervalAgg,
    held_down: IntervalAgg,
    stale_served: IntervalAgg,
    stale_held: IntervalAgg,
    downs_per_node: Vec<u32>,
    pub no_provider_ms: Vec<u64>,
    n_services: usize,
    guard: GuardStats,
    series: Series,
    series_nodes: Vec<(u32, String)>,
    tx_bytes_at_last_sample: u64,
    tx_bytes_total: u64,
    last_sample_ms: u64,
    pub datagrams: u64,
    pub lost: u64,
    pub partitioned: u64,
    pub cut: u64,
    pub duplicated: u64,
    /// Nodes on the cut-off side of some fault.
    cut_side: Vec<bool>,
    any_cut: bool,
    live: u32,
    /// [cut-off, rest]: observer-ms live members were served down; lowest served fraction.
    side_down_ms: [u64; 2],
    side_min_frac: [f64; 2],
    /// When the last cut was lifted, and when the exact truth was first seen after it.
    healed_at: Option<u64>,
    exact_at: Option<u64>,
    last_exact_check: u64,
    /// The gray-failure figures (`measure_gray`).
    gray: crate::measure_gray::GrayRecorder,
}

impl Recorder {
    pub fn new(
        n: usize,
        initial: usize,
        from_ms: u64,
        n_services: usize,
        series_nodes: Vec<(u32, String)>,
    ) -> Self {
        Recorder {
            from_ms,
            n,
            initial,
            tx_msgs: vec![0; n],
            tx_bytes: vec![0; n],
            rx_bytes: vec![0; n],
            alive_ms: vec![0; n],
            alive_since: vec![None; n],
            serving: vec![0; n],
            guard_state: vec![GuardState::Normal; n],
            tripped: vec![false; n],
            full_view_at: vec![None; n],
            sizes_seen: vec![false; n + 1],
            min_served_after_full: None,
            last_initial_start_ms: 0,
            spreads: Vec::new(),
            open_spreads: BTreeMap::new(),
            intervals: BTreeMap::new(),
            open_counts: [0; 4],
            served_down: IntervalAgg::default(),
            held_down: IntervalAgg::default(),
            stale_served: IntervalAgg::default(),
            stale_held: IntervalAgg::default(),
            downs_per_node: vec![0; n],
            no_provider_ms: vec![0; n * n_services],
            n_services,
            guard: GuardStats::default(),
            series: Series {
                nodes: series_nodes
                    .iter()
                    .map(|(i, r)| NodeSeries {
                        node: *i,
                        role: r.clone(),
                        size: Vec::new(),
                    })
                    .collect(),
                ..Series::default()
            },
            series_nodes,
            tx_bytes_at_last_sample: 0,
            tx_bytes_total: 0,
            last_sample_ms: 0,
            datagrams: 0,
            lost: 0,
            partitioned: 0,
            cut: 0,
            duplicated: 0,
            cut_side: vec![false; n],
            any_cut: false,
            live: 0,
            side_down_ms: [0; 2],
            side_min_frac: [1.0; 2],
            healed_at: None,
            exact_at: None,
            last_exact_check: 0,
            gray: crate::measure_gray::GrayRecorder::new(n),
        }
    }

    /// These nodes are the faulty members of a `loss` or `flap` fault starting at `t_ms`.
    pub fn mark_faulty(&mut self, nodes: &[usize], t_us: u64) {
        self.gray.mark_faulty(nodes, t_us / 1000);
    }

    /// These nodes are on the cut-off side of a partition, isolation or flap.
    pub fn mark_cut_side(&mut self, nodes: &[usize]) {
        self.any_cut = true;
        for &i in nodes {
            if let Some(c) = self.cut_side.get_mut(i) {
                *c = true;
            }
        }
    }

    /// A cut was lifted at `t_ms`: time the way back to the exact truth from here.
    pub fn healed(&mut self, t_ms: u64) {
        self.healed_at = Some(t_ms);
        self.exact_at = None;
    }

    fn side(&self, o: usize) -> usize {
        usize::from(!self.cut_side.get(o).copied().unwrap_or(false))
    }

    /// Whether every live node serves every other live node alive, and nothing else wrong.
    fn exact(&self, running: &[bool]) -> bool {
        self.open_counts.iter().all(|c| *c == 0)
            && running
                .iter()
                .enumerate()
                .filter(|(_, r)| **r)
                .all(|(i, _)| self.serving[i] + 1 == self.live)
    }

    /// Whether `check_exact` would look now (a heal is pending and 50 virtual ms passed).
    pub fn wants_exact_check(&self, t_ms: u64) -> bool {
        self.healed_at.is_some() && self.exact_at.is_none() && t_ms >= self.last_exact_check + 50
    }

    /// Checks (at most every 50 virtual ms, and at samples) for the exact truth after a heal.
    pub fn check_exact(&mut self, t_ms: u64, running: &[bool], force: bool) {
        if self.healed_at.is_none() || self.exact_at.is_some() {
            return;
        }
        if !force && t_ms < self.last_exact_check + 50 {
            return;
        }
        self.last_exact_check = t_ms;
        if self.exact(running) {
            self.exact_at = Some(t_ms);
        }
    }

    pub fn series_nodes(&self) -> &[(u32, String)] {
        &self.series_nodes
    }

    fn window(&self, t_ms: u64) -> bool {
        t_ms >= self.from_ms
    }

    pub fn tx(&mut self, i: usize, bytes: usize, t_ms: u64) {
        self.datagrams += 1;
        self.tx_bytes_total += bytes as u64;
        if self.window(t_ms) {
            self.tx_msgs[i] += 1;
            self.tx_bytes[i] += bytes as u64;
        }
    }

    pub fn rx(&mut self, i: usize, bytes: usize, t_ms: u64) {
        if self.window(t_ms) {
            self.rx_bytes[i] += bytes as u64;
        }
    }

    pub fn node_up(&mut self, i: usize, t_ms: u64) {
        if self.alive_since[i].is_none() {
            self.live += 1;
        }
        self.alive_since[i] = Some(t_ms);
        self.serving[i] = 0;
        self.guard_state[i] = GuardState::Normal;
        if i < self.initial {
            self.last_initial_start_ms = self.last_initial_start_ms.max(t_ms);
        }
    }

    /// Node `o` handled an input that changed what it serves: the size it settled on counts
    /// as one cluster size seen (sizes passed through within one input do not).
    pub fn view_settled(&mut self, o: usize) {
        let size = self.serving[o] as usize + 1;
        if size >= self.sizes_seen.len() {
            self.sizes_seen.resize(size + 1, false);
        }
        self.sizes_seen[size] = true;
    }

    /// Node `o` started holding `members` others, all served alive (a formed start: the
    /// core emits no event per member then).
    pub fn adopted(&mut self, o: usize, members: usize, t_ms: u64) {
        self.serving[o] = members as _;
        if o < self.initial && self.full_view_at[o].is_none() && members + 1 >= self.initial {
            self.full_view_at[o] = Some(t_ms);
        }
    }

    pub fn node_down(&mut self, i: usize, t_ms: u64) {
        if let Some(s) = self.alive_since[i].take() {
            self.live = self.live.saturating_sub(1);
            let s = s.max(self.from_ms);
            self.alive_ms[i] += t_ms.saturating_sub(s);
        }
        self.serving[i] = 0;
    }

    // ----- spreads --------------------------------------------------------------------

    /// Starts tracking how a join, leave or crash of `subject` spreads to `observers`.
    pub fn open_spread(
        &mut self,
        kind: SpreadKind,
        subject: usize,
        generation: u64,
        t_ms: u64,
        observers: impl Iterator<Item = usize>,
        poll: bool,
    ) {
        let words = self.n.div_ceil(64);
        let mut target = vec![0u64; words];
        for o in observers {
            if o != subject {
                bit_set(&mut target, o);
            }
        }
        self.close_spread(subject, kind, t_ms);
        self.open_spreads
            .insert((subject as u32, kind), self.spreads.len());
        self.spreads.push(Spread {
            kind,
            subject: subject as u32,
            generation,
            at_ms: t_ms,
            target,
            seen: vec![0u64; words],
            sightings: Vec::new(),
            poll,
            open: true,
        });
    }

    pub fn close_spread(&mut self, subject: usize, kind: SpreadKind, _t_ms: u64) {
        if let Some(i) = self.open_spreads.remove(&(subject as u32, kind)) {
            self.spreads[i].open = false;
        }
    }

    fn sight(
        &mut self,
        kind: SpreadKind,
        subject: usize,
        observer: usize,
        generation: u64,
        t_ms: u64,
    ) {
        let Some(&i) = self.open_spreads.get(&(subject as u32, kind)) else {
            return;
        };
        let s = &mut self.spreads[i];
        if generation < s.generation || !bit_get(&s.target, observer) || bit_get(&s.seen, observer)
        {
            return;
        }
        bit_set(&mut s.seen, observer);
        let dt = t_ms.saturating_sub(s.at_ms).min(u32::MAX as u64) as u32;
        s.sightings.push((observer as u32, dt));
    }

    /// Open join spreads that must be polled: (subject, generation, observers not seen yet).
    pub fn pollable(&self) -> Vec<(usize, u64, Vec<usize>)> {
        self.open_spreads
            .values()
            .map(|&i| &self.spreads[i])
            .filter(|s| s.poll && s.kind == SpreadKind::Join)
            .map(|s| {
                let unseen = (0..self.n)
                    .filter(|&o| bit_get(&s.target, o) && !bit_get(&s.seen, o))
                    .collect();
                (s.subject as usize, s.generation, unseen)
            })
            .collect()
    }

    pub fn polled_join(&mut self, subject: usize, observer: usize, generation: u64, t_ms: u64) {
        self.sight(SpreadKind::Join, subject, observer, generation, t_ms);
    }

    // ----- served view changes ----------------------------------------------------------

    /// Observer `o` changed what it serves for `x`. `x_running`: the host of `x` runs (in
    /// any life); `x_crashed`: it crashed and has not come back.
    #[allow(clippy::too_many_arguments)]
    pub fn member_event(
        &mut self,
        o: usize,
        x: usize,
        prev: Option<ServedStatus>,
        status: ServedStatus,
        generation: u64,
        t_ms: u64,
        x_running: bool,
        x_crashed: bool,
    ) {
        if o == x {
            return;
        }
        let was = prev.map(|p| p.is_serving()).unwrap_or(false);
        let is = status.is_serving();
        let in_window = self.window(t_ms);
        self.gray.change(
            o,
            x,
            prev.is_some(),
            was,
            is,
            matches!(status, ServedStatus::Down | ServedStatus::Held),
            x_running,
            self.live,
            t_ms,
            in_window,
        );
        if was && !is {
            self.serving[o] = self.serving[o].saturating_sub(1);
            if self.full_view_at[o].is_some() && self.window(t_ms) {
                let size = self.serving[o] + 1;
                let min = self.min_served_after_full.get_or_insert(size);
                *min = (*min).min(size);
            }
            if self.window(t_ms) && self.live > 1 {
                let frac = f64::from(self.serving[o]) / f64::from(self.live - 1);
                let side = self.side(o);
                self.side_min_frac[side] = self.side_min_frac[side].min(frac);
            }
        } else if !was && is {
            self.serving[o] += 1;
            if o < self.initial
                && self.full_view_at[o].is_none()
                && self.serving[o] as usize + 1 >= self.initial
            {
                self.full_view_at[o] = Some(t_ms);
            }
        }
        match status {
            ServedStatus::Alive | ServedStatus::Suspect => {
                if status == ServedStatus::Alive {
                    self.sight(SpreadKind::Join, x, o, generation, t_ms)
                }
            }
            ServedStatus::Held
            | ServedStatus::Down
            | ServedStatus::Restarting
            | ServedStatus::Damped => self.sight(SpreadKind::Crash, x, o, generation, t_ms),
            ServedStatus::Left => self.sight(SpreadKind::Leave, x, o, generation, t_ms),
        }
        let want = if x_running {
            match status {
                ServedStatus::Down => Some(IvKind::ServedDown),
                ServedStatus::Held => Some(IvKind::HeldDown),
                _ => None,
            }
        } else if x_crashed {
            match status {
                ServedStatus::Alive | ServedStatus::Suspect => Some(IvKind::StaleServed),
                ServedStatus::Held | ServedStatus::Restarting => Some(IvKind::StaleHeld),
                _ => None,
            }
        } else {
            None
        };
        self.set_interval(x, o, want, t_ms);
    }

    fn set_interval(&mut self, x: usize, o: usize, want: Option<IvKind>, t_ms: u64) {
        let key = (x as u32, o as u32);
        let cur = self.intervals.get(&key).map(|v| v.0);
        if cur == want {
            return;
        }
        if let Some((k, start)) = self.intervals.remove(&key) {
            self.finish(k, o, start, t_ms);
        }
        if let Some(k) = want {
            self.open_counts[k as usize] += 1;
            if matches!(k, IvKind::ServedDown | IvKind::HeldDown) && self.window(t_ms) {
                self.downs_per_node[x] += 1;
            }
            self.intervals.insert(key, (k, t_ms));
        }
    }

    fn finish(&mut self, k: IvKind, o: usize, start: u64, end: u64) {
        self.open_counts[k as usize] = self.open_counts[k as usize].saturating_sub(1);
        let start = start.max(self.from_ms);
        if end <= start {
            return;
        }
        let ms = end - start;
        match k {
            IvKind::ServedDown => {
                let side = self.side(o);
                self.side_down_ms[side] += ms;
                self.served_down.add(ms)
            }
            IvKind::HeldDown => self.held_down.add(ms),
            IvKind::StaleServed => self.stale_served.add(ms),
            IvKind::StaleHeld => self.stale_held.add(ms),
        }
    }

    /// Closes every interval about `x` (it crashed, restarted or left).
    pub fn close_subject(&mut self, x: usize, t_ms: u64) {
        let keys: Vec<(u32, u32)> = self
            .intervals
            .range((x as u32, 0)..=(x as u32, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some((kind, start)) = self.intervals.remove(&k) {
                self.finish(kind, k.1 as usize, start, t_ms);
            }
        }
    }

    /// Closes every interval observed by `o` (it stopped).
    pub fn close_observer(&mut self, o: usize, t_ms: u64) {
        self.gray.reset_observer(o);
        let keys: Vec<(u32, u32)> = self
            .intervals
            .keys()
            .filter(|k| k.1 == o as u32)
            .copied()
            .collect();
        for k in keys {
            if let Some((kind, start)) = self.intervals.remove(&k) {
                self.finish(kind, k.1 as usize, start, t_ms);
            }
        }
    }

    /// `x` just crashed and `o` still serves it with `status`.
    pub fn crashed_still_served(&mut self, x: usize, o: usize, status: ServedStatus, t_ms: u64) {
        let want = match status {
            ServedStatus::Alive | ServedStatus::Suspect => Some(IvKind::StaleServed),
            ServedStatus::Held | ServedStatus::Restarting => Some(IvKind::StaleHeld),
            _ => None,
        };
        self.set_interval(x, o, want, t_ms);
    }

    // ----- guard ----------------------------------------------------------------------

    pub fn guard_event(&mut self, o: usize, tr: &GuardTransition, t_ms: u64) {
        self.guard_state[o] = tr.to;
        self.guard.transitions += 1;
        *self
            .guard
            .by_kind
            .entry(format!("{}->{}", tr.from.as_str(), tr.to.as_str()))
            .or_default() += 1;
        if tr.to != GuardState::Normal && tr.to != GuardState::Warming {
            self.tripped[o] = true;
        }
        if self.guard.first.len() < MAX_GUARD_LISTED {
            self.guard.first.push(GuardChange {
                node: o as u32,
                at_s: t_ms as f64 / 1000.0,
                from: tr.from,
                to: tr.to,
                reason: tr.report.reason.clone(),
                held: tr.report.held,
            });
        }
    }

    // ----- samples ----------------------------------------------------------------------

    pub fn in_window(&self, t_ms: u64) -> bool {
        self.window(t_ms)
    }

    pub fn no_provider(&mut self, node: usize, service: usize, ms: u64) {
        if let Some(v) = self
            .no_provider_ms
            .get_mut(node * self.n_services + service)
        {
            *v += ms;
        }
    }

    pub fn sample(&mut self, s: Sample, running: &[bool]) {
        if self.window(s.t_ms) {
            self.gray.sample(running);
        }
        let sr = &mut self.series;
        sr.t_s.push(s.t_ms as f64 / 1000.0);
        sr.live.push(s.live);
        let (mut mn, mut mx, mut sum) = (u32::MAX, 0u32, 0u64);
        for v in &s.sizes {
            mn = mn.min(*v);
            mx = mx.max(*v);
            sum += u64::from(*v);
        }
        if s.sizes.is_empty() {
            mn = 0;
        }
        sr.view_min.push(mn);
        sr.view_max.push(mx);
        sr.view_mean.push(if s.sizes.is_empty() {
            0.0
        } else {
            sum as f64 / s.sizes.len() as f64
        });
        for (ns, v) in sr.nodes.iter_mut().zip(s.series) {
            ns.size.push(v);
        }
        let mut counts = [0u32; 4];
        for (i, st) in self.guard_state.iter().enumerate() {
            if running.get(i).copied().unwrap_or(false) {
                counts[*st as usize] += 1;
            }
        }
        sr.guard_frozen.push(counts[GuardState::Frozen as usize]);
        sr.guard_isolated
            .push(counts[GuardState::Isolated as usize]);
        sr.guard_warming.push(counts[GuardState::Warming as usize]);
        sr.served_down_pairs
            .push(self.open_counts[IvKind::ServedDown as usize]);
        sr.held_pairs
            .push(self.open_counts[IvKind::HeldDown as usize]);
        sr.stale_pairs.push(
            self.open_counts[IvKind::StaleServed as usize]
                + self.open_counts[IvKind::StaleHeld as usize],
        );
        sr.no_provider_nodes.push(s.no_provider_nodes);
        let dt = s.t_ms.saturating_sub(self.last_sample_ms).max(1) as f64 / 1000.0;
        sr.tx_bytes_per_s
            .push((self.tx_bytes_total - self.tx_bytes_at_last_sample) as f64 / dt);
        self.tx_bytes_at_last_sample = self.tx_bytes_total;
        self.last_sample_ms = s.t_ms;
    }
}

#[path = "measure_finish.rs"]
mod finish;
