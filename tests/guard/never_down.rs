//! Acting before the damage: with a watch stream on every agent from before the fault to the
//! end, no agent ever serves a reachable peer down, through cuts right after forming, splits,
//! one-way cuts and churn; after the heal every agent serves the exact truth within
//! `EXACT_AFTER_HEAL`.

use super::*;
use common::{name, Cluster};
use shoal::api::types::WatchLine;
use shoal::api::ApiHandle;
use shoal_core::{EventKind, GuardState, ServedStatus};
use std::time::Duration;

/// How long after a cut is lifted every agent must serve the exact truth (issue #9's bound).
const EXACT_AFTER_HEAL: Duration = Duration::from_secs(2);

/// One watch stream per agent, from before the fault to the end of the test.
struct Watchers {
    _apis: Vec<ApiHandle>,
    /// (agent, its watch stream)
    watchers: Vec<(usize, Watcher)>,
}

impl Watchers {
    async fn start(c: &Cluster, agents: &[usize]) -> Watchers {
        let mut apis = Vec::new();
        let mut watchers = Vec::new();
        for &i in agents {
            let (h, client) = c.api(i).await;
            watchers.push((i, Watcher::start(&client).await));
            apis.push(h);
        }
        Watchers {
            _apis: apis,
            watchers,
        }
    }

    /// Every (observer, member) pair the watch streams of `agents` showed served `down`, in
    /// the snapshot or in any event since.
    fn served_down(&self, agents: &[usize]) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (i, w) in self.watchers.iter().filter(|(i, _)| agents.contains(i)) {
            let i = *i;
            for line in w.lines.lock().unwrap().iter() {
                match line {
                    WatchLine::Snapshot(s) => out.extend(
                        s.members
                            .iter()
                            .filter(|m| m.status == ServedStatus::Down)
                            .map(|m| (i, m.name.clone())),
                    ),
                    WatchLine::Event(e) => {
                        if let EventKind::Member { member, .. } = &e.kind {
                            if member.status == ServedStatus::Down {
                                out.push((i, member.name.clone()));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn events(&self) -> usize {
        self.watchers
            .iter()
            .map(|(_, w)| w.lines.lock().unwrap().len())
            .sum()
    }
}

impl Cluster {
    /// Every running agent serves every running agent `alive`, and nothing else but
    /// members that left (the guard may still be frozen for its hysteresis; what apps get
    /// is exact).
    fn exact_view(&self) -> bool {
        let live: Vec<String> = self.live().into_iter().map(name).collect();
        self.live().into_iter().all(|i| {
            let view = self.view(i);
            live.iter().all(|n| {
                view.iter()
                    .any(|(m, st)| m == n && *st == ServedStatus::Alive)
            }) && view
                .iter()
                .all(|(m, st)| *st == ServedStatus::Left || live.contains(m))
        })
    }

    /// Lifts every cut and waits for the exact view; returns how long it took.
    async fn heal_to_exact(&self) -> Duration {
        self.heal();
        self.wait(
            EXACT_AFTER_HEAL,
            "every agent serves the exact truth after the heal",
            || self.exact_view(),
        )
        .await
    }
}

/// The guard state and served view every agent shows when the cut has taken effect.
async fn wait_cut_effect(c: &Cluster, frozen: &[usize], isolated: &[usize]) -> Duration {
    let n = c.n();
    c.wait(
        REACT,
        "the cut-off side isolated, the rest frozen or normal",
        || {
            isolated.iter().all(|&i| {
                let g = c.guard(i);
                g.state == GuardState::Isolated && g.held == n - isolated.len()
            }) && frozen.iter().all(|&i| {
                let g = c.guard(i);
                g.state == GuardState::Frozen && g.held == isolated.len()
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cut_off_one_second_after_the_cluster_formed_never_serves_anyone_down() {
    let c = start(7, Setup::default()).await;
    let all: Vec<usize> = (0..7).collect();
    let w = Watchers::start(&c, &all).await;
    c.wait(SETTLE, "converged", || c.exact_view()).await;
    // One second after the cluster formed (the fault's timing, not a wait for an outcome).
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.cut(&[6]);
    let took = wait_cut_effect(&c, &[], &[6]).await;
    // The six removed the one node they lost, as after a crash.
    c.wait(REACT, "the others serve n6 down", || {
        (0..6).all(|i| c.status(i, &name(6)) == Some(ServedStatus::Down))
    })
    .await;
    let healed = c.heal_to_exact().await;
    eprintln!("1 of 7 cut 1 s after forming: isolated and holding in {took:?}, exact {healed:?} after the heal");
    assert_eq!(
        w.served_down(&[6]),
        vec![],
        "the cut-off host served a live member down"
    );
    assert!(w.events() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_after_a_stable_period_never_serves_anyone_down_on_either_side() {
    let c = start(7, Setup::default()).await;
    c.settle().await;
    let all: Vec<usize> = (0..7).collect();
    let w = Watchers::start(&c, &all).await;
    // A stable period well past `stable_after` (1 s here).
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.cut(&[4, 5, 6]);
    let took = wait_cut_effect(&c, &[0, 1, 2, 3], &[4, 5, 6]).await;
    let healed = c.heal_to_exact().await;
    eprintln!("3/4 split: frozen and isolated in {took:?}, exact {healed:?} after the heal");
    assert_eq!(w.served_down(&all), vec![], "a live member was served down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_stops_receiving_never_serves_anyone_down() {
    let c = start(7, Setup::default()).await;
    let w = Watchers::start(&c, &[6]).await;
    c.wait(SETTLE, "converged", || c.exact_view()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // One-way: n6's datagrams still go out, nothing comes in.
    c.shared[6].faults.set_deaf(true);
    let took = c
        .wait(REACT, "n6 isolated holding everyone", || {
            let g = c.guard(6);
            g.state == GuardState::Isolated && c.serves(6, &[6], &[0, 1, 2, 3, 4, 5], &[])
        })
        .await;
    let reason = c.guard(6).reason;
    let healed = c.heal_to_exact().await;
    eprintln!("one-way cut: isolated in {took:?} ({reason}), exact {healed:?} after the heal");
    assert_eq!(
        w.served_down(&[6]),
        vec![],
        "the deaf host served a live member down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_in_the_middle_of_churn_never_serves_anyone_down() {
    let mut c = start(7, Setup::default()).await;
    let all: Vec<usize> = (0..7).collect();
    let w = Watchers::start(&c, &all).await;
    c.wait(SETTLE, "converged", || c.exact_view()).await;
    // Churn: a node joins, then leaves gracefully, one change every 400 ms (the `local`
    // profile is five times faster than `lan`: every 2 s on a LAN), never a quiet period.
    let mut churned = Vec::new();
    for k in 0..6 {
        churned.push(c.add(k % 4).await);
        // A join is done when every agent serves the joiner (on a loaded machine that can
        // take longer than 400 ms; a node that leaves before the others know it is a
        // different story: they never see its leave).
        c.wait(SETTLE, "every agent serves the joiner", || c.exact_view())
            .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        if k % 2 == 1 {
            let j = churned.remove(0);
            if let Some(a) = c.agents[j].take() {
                a.leave_and_stop(Duration::from_secs(2)).await;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
    // Split n0..n3 from n4..n6 and the churned agents still running (4 of 10 vs 6 of 10).
    let mut six = vec![4, 5, 6];
    six.extend(churned.iter().copied());
    for i in c.live() {
        let others = c
            .live()
            .into_iter()
            .filter(|j| six.contains(&i) != six.contains(j))
            .map(|j| c.addrs[j]);
        c.shared[i].faults.block_all(others);
    }
    c.wait(REACT, "the four isolated, the six frozen", || {
        (0..4).all(|i| c.guard(i).state == GuardState::Isolated)
            && [4, 5, 6]
                .iter()
                .all(|&i| c.guard(i).state == GuardState::Frozen)
    })
    .await;
    // Let SWIM declare the other side down, then heal.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let healed = c.heal_to_exact().await;
    eprintln!("split under churn: exact {healed:?} after the heal");
    let down: Vec<(usize, String)> = w
        .served_down(&all)
        .into_iter()
        .filter(|(_, m)| (0..7).any(|i| *m == name(i)))
        .collect();
    assert_eq!(down, vec![], "a live member was served down");
}
