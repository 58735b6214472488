//! The end of a run: turns the recorder's counts into the `RunResult` (spread quantiles,
//! false downs, stale and no-provider seconds, traffic per node, sides, full view).
//!
//! A child module of `measure` (it reads the recorder's fields). Must not drive nodes.

use super::*;

impl Recorder {
    #[allow(clippy::too_many_arguments)]
    pub fn finish_run(
        mut self,
        end_ms: u64,
        running: &[bool],
        scenario: String,
        mode: GuardMode,
        seed: u64,
        faults: Vec<FaultWindow>,
        services: Vec<(String, Vec<u32>)>,
    ) -> RunResult {
        self.check_exact(end_ms, running, true);
        for (i, r) in running.iter().enumerate() {
            if *r {
                self.node_down(i, end_ms);
            }
        }
        let keys: Vec<(u32, u32)> = self.intervals.keys().copied().collect();
        for k in keys {
            if let Some((kind, start)) = self.intervals.remove(&k) {
                self.finish(kind, k.1 as usize, start, end_ms);
            }
        }
        let sides = self.any_cut.then(|| {
            let cut_nodes = self.cut_side.iter().filter(|c| **c).count() as u32;
            let outcome = |side: usize, nodes: u32| SideOutcome {
                nodes,
                min_served_fraction: (self.side_min_frac[side] * 1000.0).round() / 1000.0,
                live_served_down_s: self.side_down_ms[side] as f64 / 1000.0,
            };
            Sides {
                cut_off: outcome(0, cut_nodes),
                rest: outcome(1, self.initial as u32 - cut_nodes.min(self.initial as u32)),
                exact_truth_after_heal_s: match (self.healed_at, self.exact_at) {
                    (Some(h), Some(e)) => Some(e.saturating_sub(h) as f64 / 1000.0),
                    _ => None,
                },
            }
        });

        // Spreads.
        let mut spreads = Spreads::default();
        let mut pools: BTreeMap<SpreadKind, Vec<f64>> = BTreeMap::new();
        let mut per_kind: BTreeMap<SpreadKind, KindAcc> = BTreeMap::new();
        for s in &self.spreads {
            // Observers that count: targeted at the start and still running at the end.
            let eligible =
                |o: usize| bit_get(&s.target, o) && running.get(o).copied().unwrap_or(false);
            let observers = (0..self.n).filter(|&o| eligible(o)).count() as u32;
            let times: Vec<u32> = s
                .sightings
                .iter()
                .filter(|(o, _)| eligible(*o as usize))
                .map(|(_, dt)| *dt)
                .collect();
            let at = |q: f64| -> Option<f64> {
                if observers == 0 {
                    return None;
                }
                let k = ((observers as f64) * q).ceil().max(1.0) as usize;
                times.get(k - 1).map(|ms| f64::from(*ms) / 1000.0)
            };
            let r = SpreadResult {
                kind: s.kind,
                node: s.subject,
                at_s: s.at_ms as f64 / 1000.0,
                observers,
                seen: times.len() as u32,
                t50_s: at(0.5),
                t99_s: at(0.99),
                t100_s: at(1.0),
            };
            let pool = pools.entry(s.kind).or_default();
            for ms in &times {
                if pool.len() < MAX_POOL {
                    pool.push(f64::from(*ms) / 1000.0);
                }
            }
            if observers > 0 {
                let e = per_kind.entry(s.kind).or_default();
                e.0 += 1;
                if r.t100_s.is_some() {
                    e.1 += 1;
                }
                e.2.extend(r.t50_s);
                e.3.extend(r.t99_s);
                e.4.extend(r.t100_s);
            }
            if spreads.list.len() < MAX_SPREADS_LISTED {
                spreads.list.push(r);
            }
        }
        for (kind, (count, complete, t50, t99, t100)) in per_kind {
            let mut pool = pools.remove(&kind).unwrap_or_default();
            pool.sort_by(|a, b| a.total_cmp(b));
            let cdf = (0..=100)
                .map(|q| quantile_f64(&pool, q as f64 / 100.0))
                .collect();
            let st = SpreadStats {
                count,
                complete,
                t50_s: Quantiles::of(t50),
                t99_s: Quantiles::of(t99),
                t100_s: Quantiles::of(t100),
                cdf_s: if pool.is_empty() { Vec::new() } else { cdf },
            };
            match kind {
                SpreadKind::Join => spreads.join = st,
                SpreadKind::Leave => spreads.leave = st,
                SpreadKind::Crash => spreads.crash = st,
            }
        }

        // Full view.
        let mut fv: Vec<u64> = self.full_view_at[..self.initial]
            .iter()
            .flatten()
            .copied()
            .collect();
        fv.sort_unstable();
        let of = self.initial as u32;
        let at = |q: f64| -> Option<f64> {
            let k = ((of as f64) * q).ceil().max(1.0) as usize;
            fv.get(k - 1).map(|ms| *ms as f64 / 1000.0)
        };
        let full_view = FullView {
            nodes: fv.len() as u32,
            of,
            t50_s: at(0.5),
            t99_s: at(0.99),
            t100_s: at(1.0),
            after_last_start_s: at(1.0).map(|t| t - self.last_initial_start_ms as f64 / 1000.0),
            distinct_sizes: self.sizes_seen.iter().filter(|s| **s).count() as u32,
            min_served_after_full: self.min_served_after_full,
            exact_after_last_heal_s: match (self.healed_at, self.exact_at) {
                (Some(h), Some(e)) => Some(e.saturating_sub(h) as f64 / 1000.0),
                _ => None,
            },
        };

        // False downs.
        let mut top: Vec<(u32, u32)> = self
            .downs_per_node
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i as u32, *c))
            .collect();
        let victims = top.len() as u32;
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(10);
        let mut declared = IntervalAgg::default();
        for a in [&self.served_down, &self.held_down] {
            declared.count += a.count;
            declared.total_ms += a.total_ms;
            declared.max_ms = declared.max_ms.max(a.max_ms);
            declared.pool.extend_from_slice(&a.pool);
        }
        let false_downs = FalseDowns {
            declared: declared.stats(),
            served: self.served_down.stats(),
            held: self.held_down.stats(),
            victims,
            top,
        };
        let stale = Stale {
            served_alive: self.stale_served.stats(),
            held: self.stale_held.stats(),
            total_s: (self.stale_served.total_ms + self.stale_held.total_ms) as f64 / 1000.0,
        };

        // No-provider seconds.
        let ns = self.n_services.max(1);
        let mut np = NoProvider::default();
        for (si, (name, providers)) in services.into_iter().enumerate() {
            let mut total = 0u64;
            let mut affected = 0u32;
            for node in 0..self.n {
                let v = self
                    .no_provider_ms
                    .get(node * ns + si)
                    .copied()
                    .unwrap_or(0);
                total += v;
                if v > 0 {
                    affected += 1;
                }
            }
            np.total_s += total as f64 / 1000.0;
            np.services.push(ServiceOutcome {
                name,
                providers,
                no_provider_s: total as f64 / 1000.0,
                nodes_affected: affected,
            });
        }
        let per_node: Vec<f64> = (0..self.n)
            .filter(|&i| self.alive_ms[i] > 0)
            .map(|i| {
                (0..self.n_services)
                    .map(|s| self.no_provider_ms[i * ns + s])
                    .sum::<u64>() as f64
                    / 1000.0
            })
            .collect();
        let mut worst: Vec<(u32, f64)> = (0..self.n)
            .map(|i| {
                let s: u64 = (0..self.n_services)
                    .map(|s| self.no_provider_ms[i * ns + s])
                    .sum();
                (i as u32, s as f64 / 1000.0)
            })
            .filter(|(_, s)| *s > 0.0)
            .collect();
        worst.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        worst.truncate(10);
        np.per_node_s = Quantiles::of(per_node);
        np.worst = worst;

        // Traffic.
        let rate = |v: &Vec<u64>| -> Vec<f64> {
            (0..self.n)
                .filter(|&i| self.alive_ms[i] >= 1000)
                .map(|i| v[i] as f64 / (self.alive_ms[i] as f64 / 1000.0))
                .collect()
        };
        let txb = rate(&self.tx_bytes);
        let mut sorted = txb.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let step = sorted.len().div_ceil(200).max(1);
        let traffic = Traffic {
            tx_msgs_per_s: Quantiles::of(rate(&self.tx_msgs)),
            tx_bytes_per_s: Quantiles::of(txb),
            rx_bytes_per_s: Quantiles::of(rate(&self.rx_bytes)),
            tx_bytes_per_s_sorted: sorted.iter().step_by(step).copied().collect(),
            datagrams: self.datagrams,
            // Counted by the nodes: the world fills it in.
            coordinate_datagrams: 0,
            lost: self.lost,
            partitioned: self.partitioned,
            cut: self.cut,
            duplicated: self.duplicated,
        };
        self.guard.nodes_tripped = self.tripped.iter().filter(|t| **t).count() as u32;

        RunResult {
            scenario,
            mode,
            seed,
            nodes: self.initial,
            duration_s: end_ms as f64 / 1000.0,
            measure_from_s: self.from_ms as f64 / 1000.0,
            faults,
            spreads,
            full_view,
            false_downs,
            stale,
            no_provider: np,
            traffic,
            guard: self.guard,
            series: self.series,
            perf: Perf::default(),
            sides,
            health: None,
            gray: self.gray.finish(running),
            user_events: None,
            coordinates: None,
            queries: None,
        }
    }
}
