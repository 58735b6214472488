//! Faults: turning each of the scenario's faults into timed actions on hosts and network
//! rules, the fault targets resolved before the run, and the nodes given a full series.
//!
//! A child module of `world` (it reaches the world's fields). Every choice comes from the
//! scenario's seed, the same in every guard mode.

use super::*;
use crate::scenario::FaultSpec;

impl World<'_> {
    pub(super) fn at(&mut self, at: u64, a: Action) {
        self.push(at, Ev::Act(a));
    }

    pub(super) fn fault(&mut self, idx: usize) {
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
                let deaf = f.direction == Some(Direction::Ingress);
                self.rec.mark_cut_side(&targets);
                self.rec.mark_faulty(&targets, t0);
                let mut t = t0;
                while t < stop {
                    let back = (t + off).min(stop);
                    for &i in &targets {
                        if deaf {
                            self.at(t, Action::Deaf(i as u32, true));
                            self.at(back, Action::Deaf(i as u32, false));
                        } else {
                            self.at(t, Action::Cut(i as u32, true));
                            self.at(back, Action::Cut(i as u32, false));
                        }
                    }
                    t = back + on;
                }
            }
            FaultKind::Crash => {
                for &i in &targets {
                    self.at(t0, stop_action(&f, i));
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
                    self.at(t, stop_action(&f, i));
                    self.at(t + down, Action::Restart(i as u32, f.keep_data));
                }
                window_end = (t0 + every * targets.len() as u64).min(self.end);
            }
            FaultKind::Query => {
                let from = f.node.unwrap_or(0);
                self.at(t0, Action::Query(from as u32, f.service.clone()));
                window_end = t0;
            }
            FaultKind::UserEvent => {
                let from = f.node.unwrap_or(0);
                self.at(t0, Action::UserEvent(from as u32));
                window_end = t0;
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
                let dir = f.direction.unwrap_or(Direction::Egress);
                let (eg, ing) = (dir != Direction::Ingress, dir != Direction::Egress);
                let set = |r: f64| (eg.then_some(r), ing.then_some(r));
                if f.node.is_some()
                    || f.nodes.is_some()
                    || f.count.is_some()
                    || f.fraction.is_some()
                {
                    // Chosen hosts (not the whole network): the faulty members whose fate the
                    // gray-failure figures follow.
                    self.rec.mark_faulty(&targets, t0);
                }
                for &i in &targets {
                    let (e1, i1) = set(rate);
                    self.at(t0, Action::Loss(i as u32, e1, i1));
                    if let Some(e) = end {
                        let (e0, i0) = set(0.0);
                        self.at(e, Action::Loss(i as u32, e0, i0));
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
}

/// Resolves every fault's nodes before the run, walking the timeline with the set of nodes
/// expected to run (crashes for good and leaves remove, joins add): the choice is the same in
/// every mode.
pub(super) fn plan_targets(sc: &Scenario) -> Vec<Vec<usize>> {
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
pub(super) fn pick_series(sc: &Scenario, targets: &[Vec<usize>]) -> Vec<(u32, String)> {
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

/// Hosts some fault restarts with their data directory (`keep_data`): the ones whose
/// snapshots a restart reads.
pub(super) fn keeps_data(sc: &Scenario, targets: &[Vec<usize>]) -> Vec<bool> {
    let mut out = vec![false; sc.total_nodes()];
    for (f, t) in sc.faults.iter().zip(targets) {
        let restarts = match f.kind {
            FaultKind::Crash => f.duration.is_some(),
            FaultKind::RollingRestart => true,
            _ => false,
        };
        if restarts && f.keep_data {
            for &i in t {
                if let Some(k) = out.get_mut(i) {
                    *k = true;
                }
            }
        }
    }
    out
}

/// How a `crash` or `rolling-restart` fault stops host `i`: a crash, or with `terminate`, as
/// on SIGTERM (a restart announced, then the process gone).
fn stop_action(f: &FaultSpec, i: usize) -> Action {
    match f.terminate {
        Some(t) => Action::Terminate(i as u32, t.restart_grace.ms()),
        None => Action::Crash(i as u32),
    }
}
