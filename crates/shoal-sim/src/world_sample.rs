//! The periodic sample: served-view sizes, the no-provider check, the services' health
//! and the join polls of restarted nodes, fed to the recorder.
//!
//! A child module of `world` (it reaches the world's fields). Must not change any node.

use super::*;
use shoal_core::ServedStatus;

impl World<'_> {
    pub(super) fn sample(&mut self) {
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
                // Through the served view, as an app reads it (`/v1/agent/members`): the
                // member of the new generation served alive or suspect.
                let ok = node
                    .member(name)
                    .map(|m| {
                        m.generation >= generation
                            && matches!(m.status, ServedStatus::Alive | ServedStatus::Suspect)
                    })
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
