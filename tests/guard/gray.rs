//! Gray failures and flap damping with real agents on loopback (issue 21): a host that loses
//! most of its packets is removed once by every other agent and stays out; a host whose
//! ingress comes and goes is damped after its first return. Asserted over every observer's
//! watch stream (each presence change of the faulty host, and every healthy member served
//! down), not by a sample. The faults are the transport's test hooks (`AgentShared::faults`:
//! seeded random loss both ways, and a one-way cut of everything the host receives).

use super::*;
use common::name;
use shoal::api::types::WatchLine;
use shoal_core::{EventKind, MemberView};
use std::time::Duration;

/// One watch stream per healthy agent (kept open by its API server).
async fn watch(c: &Cluster, agents: &[usize]) -> (Vec<ApiHandle>, Vec<(usize, Watcher)>) {
    let mut apis = Vec::new();
    let mut out = Vec::new();
    for &i in agents {
        let (h, client) = c.api(i).await;
        out.push((i, Watcher::start(&client).await));
        apis.push(h);
    }
    (apis, out)
}

/// The member events `w` showed: (previous served status, the member as served).
fn member_events(w: &Watcher) -> Vec<(Option<ServedStatus>, MemberView)> {
    w.lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| match l {
            WatchLine::Event(e) => match &e.kind {
                EventKind::Member {
                    previous, member, ..
                } => Some((*previous, member.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Times `w` showed `member` go from served to not served or back (events only: the
/// snapshot is the starting point).
fn presence_changes(w: &Watcher, member: &str) -> usize {
    member_events(w)
        .iter()
        .filter(|(p, m)| {
            m.name == member && p.is_some_and(|p| p.is_serving() != m.status.is_serving())
        })
        .count()
}

/// Why `m` is in its status, in words, for a failure message.
fn why(m: &MemberView) -> String {
    format!(
        "{} (gray {:?}, truth {:?}, {})",
        m.status.as_str(),
        m.gray,
        m.truth,
        m.cause.as_ref().map_or("", |c| c.text.as_str())
    )
}

/// Every status `w` showed `member` in, with why.
fn statuses(w: &Watcher, member: &str) -> Vec<String> {
    member_events(w)
        .iter()
        .filter(|(_, m)| m.name == member)
        .map(|(_, m)| why(m))
        .collect()
}

/// Members other than `faulty` that `w` showed not served (`down`, `left` or `damped`),
/// with why (the gray cause, who suspected it, who declared it down).
fn healthy_removed(w: &Watcher, faulty: &str) -> Vec<(String, String)> {
    member_events(w)
        .iter()
        .filter(|(_, m)| m.name != faulty && !m.status.is_serving())
        .map(|(_, m)| (m.name.clone(), why(m)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_losing_most_of_its_packets_is_removed_once_and_stays_out() {
    // As shipped: damping on (when SWIM itself declares the lossy host down and it rejoins,
    // its return is a flap and it stays out, damped).
    let c = start(
        7,
        Setup {
            damping: true,
            ..Setup::default()
        },
    )
    .await;
    c.settle().await;
    let healthy: Vec<usize> = (0..6).collect();
    let (_apis, ws) = watch(&c, &healthy).await;
    let lossy = name(6);
    // 80 % of what n6 sends and of what it receives is lost (seeded).
    c.shared[6].faults.set_loss(800, 21);
    let took = c
        .wait(REACT, "every healthy agent has removed n6", || {
            // Out of every view: `down` on the observers' gray evidence, or, when SWIM got
            // there first (its probes fail too) and n6 rejoined, `damped`: either way not
            // served, and (below) out only once.
            healthy.iter().all(|&i| {
                c.shared[i].lock().member(&lossy).is_some_and(|m| {
                    (m.status == ServedStatus::Down && m.gray.is_some())
                        || m.status == ServedStatus::Damped
                })
            })
        })
        .await;
    // And it stays out while the loss lasts.
    tokio::time::sleep(Duration::from_secs(15)).await;
    for &i in &healthy {
        let m = c.shared[i].lock().member(&lossy).expect("still known");
        assert!(!m.status.is_serving(), "n{i}: {m:?}");
    }
    eprintln!("80 % loss on 1 of 7: removed everywhere in {took:?}");
    for (i, w) in &ws {
        assert_eq!(
            presence_changes(w, &lossy),
            1,
            "n{i} served the lossy host in and out: {:#?}",
            statuses(w, &lossy)
        );
        assert_eq!(
            healthy_removed(w, &lossy),
            vec![],
            "n{i} removed a healthy member"
        );
    }
    c.shared[6].faults.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_ingress_comes_and_goes_is_damped() {
    let c = start(
        7,
        Setup {
            damping: true,
            ..Setup::default()
        },
    )
    .await;
    c.settle().await;
    let healthy: Vec<usize> = (0..6).collect();
    let (_apis, ws) = watch(&c, &healthy).await;
    let flapping = name(6);
    // Ingress off 8 s / on 8 s, three times (long enough to be declared down each time).
    for _ in 0..3 {
        c.shared[6].faults.set_deaf(true);
        tokio::time::sleep(Duration::from_secs(8)).await;
        c.shared[6].faults.set_deaf(false);
        tokio::time::sleep(Duration::from_secs(8)).await;
    }
    for &i in &healthy {
        let m = c.shared[i].lock().member(&flapping).expect("known");
        assert_eq!(m.status, ServedStatus::Damped, "n{i}: {m:?}");
        let d = m.damping.expect("the penalty is served");
        assert!(d.penalty >= 600 && d.suppressed_since.is_some(), "{d:?}");
    }
    for (i, w) in &ws {
        // Down once; never served again while it flapped.
        assert_eq!(
            presence_changes(w, &flapping),
            1,
            "n{i} served the flapping host in and out"
        );
        assert_eq!(
            healthy_removed(w, &flapping),
            vec![],
            "n{i} removed a healthy member"
        );
    }
}
