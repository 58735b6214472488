//! What the guard does when agents are cut off, crash, leave, restart or are overridden by the
//! operator, and that it shows the same everywhere (API, CLI, metrics, watch stream, alert
//! hook). Each test builds its cluster with `start` (see `main.rs`).

use super::*;
use common::{holds_for, name, wait_until, Cluster};
use shoal::agent::Agent;
use shoal::cli::{self, ClientArgs, ClientCommand, Format, GuardAction};
use shoal::client::MemberQuery;
use shoal_core::{GuardMode, GuardState, ServedStatus};
use std::process::ExitCode;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_six_cut_off_is_isolated_and_the_rest_remove_only_it() {
    let c = start(6, Setup::default()).await;
    c.settle().await;
    let rest = [0, 1, 2, 3, 4];
    c.cut(&[5]);
    let took = c
        .wait(REACT, "n5 isolated, the others remove only n5", || {
            // The five never trip: one failure is under the limit.
            for i in rest {
                let st = c.guard(i).state;
                assert_eq!(
                    st,
                    GuardState::Normal,
                    "n{i} must stay normal: {:?}",
                    c.guard(i)
                );
            }
            let g5 = c.guard(5);
            g5.state == GuardState::Isolated
                && g5.held == 5
                && c.serves(5, &[5], &rest, &[])
                && rest.iter().all(|i| c.serves(*i, &rest, &[], &[5]))
        })
        .await;
    eprintln!("1 of 6 cut: reacted in {took:?}; n5: {:?}", c.guard(5));
    holds_for(Duration::from_secs(1), "the cut view", || {
        c.guard(5).state == GuardState::Isolated
            && c.serves(5, &[5], &rest, &[])
            && rest.iter().all(|i| c.guard(*i).state == GuardState::Normal)
    })
    .await;
    c.heal();
    let took = c
        .wait(HEAL, "all six back to the exact truth", || c.exact_truth())
        .await;
    eprintln!("1 of 6 cut: healed to the exact truth in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_three_split_freezes_the_four_isolates_the_three_and_never_empties_a_service() {
    let hooks = tempfile::tempdir().expect("temp dir");
    let setup = Setup {
        api_on: vec![4, 5, 6],
        hook: Some(hook_command(hooks.path())),
        ..Default::default()
    };
    let c = start(7, setup).await;
    c.settle().await;
    let (api_handle, client) = c.api(0).await;
    check_visible(&c, 0, &client, GuardState::Normal, 0).await;
    let watcher = Watcher::start(&client).await;
    let four = [0, 1, 2, 3];
    let three = [4, 5, 6];
    // The four must always serve `api`, which only the three offer.
    let api_served = |c: &Cluster| {
        for i in four {
            let n = c.shared[i]
                .lock()
                .services()
                .get("api")
                .map(Vec::len)
                .unwrap_or(0);
            assert!(n > 0, "n{i} serves `api` empty: {:?}", c.view(i));
        }
    };
    api_served(&c);

    c.cut(&three);
    let took = c
        .wait(REACT, "four frozen holding three, three isolated", || {
            api_served(&c);
            four.iter().all(|i| {
                let g = c.guard(*i);
                g.state == GuardState::Frozen && g.held == 3 && c.serves(*i, &four, &three, &[])
            }) && three.iter().all(|i| {
                let g = c.guard(*i);
                g.state == GuardState::Isolated && g.held == 4 && c.serves(*i, &three, &four, &[])
            })
        })
        .await;
    eprintln!("4/3 split: reacted in {took:?}; n0: {:?}", c.guard(0));
    let api_instances = c.shared[0].lock().services()["api"].clone();
    assert_eq!(api_instances.len(), 3, "{api_instances:?}");
    assert!(api_instances.iter().all(|x| x.status == ServedStatus::Held));

    // Visible everywhere on n0: API, members, metrics, CLI, watch, alert hook.
    let reason = check_visible(&c, 0, &client, GuardState::Frozen, 3).await;
    assert!(reason.contains("3 of 6 baseline peers lost"), "{reason}");
    assert!(reason.contains("limit 40%"), "{reason}");
    let mut table = Vec::new();
    let code = cli::run_with(
        ClientArgs {
            api: format!("unix:{}", c.api_socket(0).display()),
            format: Format::Table,
        },
        ClientCommand::Guard {
            action: None,
            all: false,
        },
        &mut table,
        &mut Vec::new(),
    )
    .await
    .expect("CLI runs");
    assert_eq!(code, ExitCode::SUCCESS);
    let table = String::from_utf8(table).expect("UTF-8");
    assert!(
        table.contains("frozen") && table.contains(&reason),
        "{table}"
    );
    assert!(table.contains("held members: n4, n5, n6"), "{table}");
    let strict = client
        .members(&MemberQuery {
            status: vec!["alive".into()],
            ..Default::default()
        })
        .await
        .expect("?status=alive");
    assert_eq!(strict.members.len(), 4, "the strict view has only the four");
    wait_until(REACT, "a guard event on the watch stream", || {
        watcher.saw(GuardState::Frozen)
    })
    .await;
    let t = watcher
        .transitions()
        .into_iter()
        .find(|t| t.to == GuardState::Frozen)
        .expect("frozen transition");
    assert_eq!(t.from, GuardState::Normal);
    // It froze on suspicion, before SWIM declared the three down (held then, not before).
    assert!(t.report.held <= 3, "{t:?}");
    wait_until(REACT, "the alert hook ran on entry to frozen", || {
        hook_runs(hooks.path())
            .iter()
            .any(|(s, t)| s == "frozen" && t.to == GuardState::Frozen)
    })
    .await;

    holds_for(Duration::from_secs(1), "the split view", || {
        api_served(&c);
        four.iter()
            .all(|i| c.guard(*i).state == GuardState::Frozen && c.serves(*i, &four, &three, &[]))
    })
    .await;

    c.heal();
    let took = c
        .wait(HEAL, "all seven back to the exact truth", || {
            api_served(&c);
            c.exact_truth()
        })
        .await;
    eprintln!("4/3 split: healed to the exact truth in {took:?}");
    check_visible(&c, 0, &client, GuardState::Normal, 0).await;
    wait_until(
        REACT,
        "the thaw on the watch stream and in the hook",
        || {
            watcher.saw(GuardState::Normal)
                && hook_runs(hooks.path()).iter().any(|(s, _)| s == "normal")
        },
    )
    .await;
    // One watch event on entry, one on exit (a transient pass through `isolated` would add
    // more; the first and the last are what a watcher acts on).
    let ts: Vec<(GuardState, GuardState)> = watcher
        .transitions()
        .iter()
        .map(|t| (t.from, t.to))
        .collect();
    eprintln!("4/3 split: n0 guard events on the watch stream: {ts:?}");
    assert_eq!(ts.first(), Some(&(GuardState::Normal, GuardState::Frozen)));
    assert_eq!(ts.last().map(|t| t.1), Some(GuardState::Normal));
    drop(watcher);
    api_handle.shutdown().await;
}

/// Stops agent 4 of a settled cluster and returns how long until everyone served it `down`.
async fn crash_removal(mode: GuardMode) -> Duration {
    let mut c = start(
        5,
        Setup {
            mode,
            ..Default::default()
        },
    )
    .await;
    c.settle().await;
    c.agents[4].take().expect("running").stop().await;
    let took = c
        .wait(REACT, "every agent serves n4 down", || {
            (0..4).all(|i| c.status(i, &name(4)) == Some(ServedStatus::Down))
        })
        .await;
    for i in 0..4 {
        assert_eq!(c.guard(i).state, GuardState::Normal, "{mode:?}");
        assert!(c.serves(i, &[0, 1, 2, 3], &[], &[4]), "{:?}", c.view(i));
    }
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_crash_is_removed_as_fast_with_the_guard_as_without() {
    let (on, off) = tokio::join!(
        crash_removal(GuardMode::Enforce),
        crash_removal(GuardMode::Off)
    );
    eprintln!("single crash removed everywhere: guard enforce {on:?}, guard off {off:?}");
    // Loose: both within a few suspicion timeouts (0.8 s with `local`, 5 members).
    let bound = Duration::from_secs(5);
    assert!(on < bound && off < bound, "on {on:?}, off {off:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_leave_while_frozen_applies_at_once() {
    let mut c = start(
        5,
        Setup {
            api_on: vec![1],
            ..Default::default()
        },
    )
    .await;
    c.settle().await;
    for i in 0..4 {
        c.shared[i].with_node(|n, now| n.guard_freeze(now, "test"));
        assert_eq!(c.guard(i).state, GuardState::Frozen);
    }
    c.agents[4]
        .take()
        .expect("running")
        .leave_and_stop(Duration::from_secs(2))
        .await;
    let took = c
        .wait(REACT, "every agent serves n4 left", || {
            (0..4).all(|i| c.status(i, &name(4)) == Some(ServedStatus::Left))
        })
        .await;
    eprintln!("leave while frozen: left everywhere {took:?} after leave_and_stop returned");

    // A deregistration empties the service at once, frozen or not.
    c.shared[1]
        .with_node(|n, now| n.deregister_service(now, "api"))
        .expect("deregistered");
    c.wait(REACT, "nobody serves `api` any more", || {
        (0..4).all(|i| !c.shared[i].lock().services().contains_key("api"))
    })
    .await;

    // A new member appears while frozen.
    c.add(0).await;
    c.wait(REACT, "the frozen agents serve the newcomer alive", || {
        (0..4).all(|i| c.status(i, &name(5)) == Some(ServedStatus::Alive))
    })
    .await;

    for i in 0..4 {
        let g = c.guard(i);
        assert_eq!((g.state, g.held), (GuardState::Frozen, 0), "n{i}: {g:?}");
        let view = c.view(i);
        assert_eq!(view.len(), 6, "{view:?}");
        for (n, st) in &view {
            let want = if n == "n4" {
                ServedStatus::Left
            } else {
                ServedStatus::Alive
            };
            assert_eq!(*st, want, "n{i} serves {n}: {view:?}");
        }
    }
}

/// `n` agents settled, agent 0 with the alert hook writing into `hooks`.
async fn start_settled_with_hook(n: usize, hooks: &std::path::Path) -> Cluster {
    let c = start(
        n,
        Setup {
            hook: Some(hook_command(hooks)),
            ..Default::default()
        },
    )
    .await;
    c.settle().await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_freeze_and_thaw_are_visible_everywhere() {
    let hooks = tempfile::tempdir().expect("temp dir");
    let c = start_settled_with_hook(3, hooks.path()).await;
    let (api_handle, client) = c.api(0).await;
    let watcher = Watcher::start(&client).await;

    let v = run_cli(
        &c.api_socket(0),
        ClientCommand::Guard {
            action: Some(GuardAction::Freeze),
            all: false,
        },
    )
    .await;
    assert_eq!(v["guard"]["state"], "frozen", "{v}");
    let reason = check_visible(&c, 0, &client, GuardState::Frozen, 0).await;
    assert!(reason.contains("frozen by operator"), "{reason}");
    wait_until(REACT, "freeze on the watch stream and in the hook", || {
        watcher.saw(GuardState::Frozen)
            && hook_runs(hooks.path()).iter().any(|(s, _)| s == "frozen")
    })
    .await;
    // An operator freeze does not thaw by itself.
    holds_for(Duration::from_millis(1500), "the operator freeze", || {
        c.guard(0).state == GuardState::Frozen
    })
    .await;

    let r = client.guard_thaw().await.expect("POST /v1/guard/thaw");
    assert_eq!(r.guard.state, GuardState::Normal);
    let reason = check_visible(&c, 0, &client, GuardState::Normal, 0).await;
    assert!(reason.contains("thawed by operator"), "{reason}");
    wait_until(REACT, "thaw on the watch stream and in the hook", || {
        watcher.saw(GuardState::Normal)
            && hook_runs(hooks.path()).iter().any(|(s, _)| s == "normal")
    })
    .await;
    // The other agents were never affected: the override is local.
    for i in 1..3 {
        assert_eq!(c.guard(i).state, GuardState::Normal);
    }
    drop(watcher);
    api_handle.shutdown().await;
}

/// `shoal guard thaw --all` on one agent thaws every agent, each with the audit trail of a
/// local thaw (its guard's reason naming the agent asked, an event on its watch stream, its
/// alert hook); a second one within the interval changes nothing on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_wide_thaw_through_the_cli_thaws_every_agent() {
    let hooks = tempfile::tempdir().expect("temp dir");
    let c = start_settled_with_hook(3, hooks.path()).await;
    let mut handles = Vec::new();
    let mut clients = Vec::new();
    for i in 0..3 {
        let (h, client) = c.api(i).await;
        handles.push(h);
        clients.push(client);
    }
    let watcher = Watcher::start(&clients[0]).await;
    for client in &clients {
        let r = client.guard_freeze().await.expect("POST /v1/guard/freeze");
        assert_eq!(r.guard.state, GuardState::Frozen);
    }
    // The operator asks agent 1; agent 0 (watched, with the hook) is told.
    let v = run_cli(
        &c.api_socket(1),
        ClientCommand::Guard {
            action: Some(GuardAction::Thaw),
            all: true,
        },
    )
    .await;
    assert_eq!(v["told"], 2, "{v}");
    assert_eq!(v["guard"]["state"], "normal", "{v}");
    wait_until(REACT, "every agent thawed", || {
        (0..3).all(|i| c.guard(i).state == GuardState::Normal)
    })
    .await;
    let reason = format!(
        "thawed by operator at {} (cluster-wide, sent from {})",
        name(1),
        c.addrs[1]
    );
    for i in [0, 2] {
        assert_eq!(c.guard(i).reason, reason, "agent {i}");
    }
    assert!(c.guard(1).reason.ends_with("(cluster-wide)"));
    wait_until(
        REACT,
        "the thaw on the watch stream and in the hook",
        || {
            watcher
                .transitions()
                .iter()
                .any(|t| t.to == GuardState::Normal && t.report.reason == reason)
                && hook_runs(hooks.path())
                    .iter()
                    .any(|(s, t)| s == "normal" && t.report.reason == reason)
        },
    )
    .await;
    // Frozen again by hand: a second cluster-wide thaw at once is not taken by the others.
    clients[0]
        .guard_freeze()
        .await
        .expect("POST /v1/guard/freeze");
    let r = clients[1]
        .guard_thaw_cluster()
        .await
        .expect("POST /v1/guard/thaw?cluster=true");
    assert_eq!(r.told, Some(2));
    holds_for(Duration::from_secs(2), "agent 0 stays frozen", || {
        c.guard(0).state == GuardState::Frozen
    })
    .await;
    drop(watcher);
    for h in handles {
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_the_snapshot_as_warming_until_reconnected() {
    let mut c = start(4, Setup::default()).await;
    c.settle().await;
    c.agents[3].take().expect("running").stop().await;
    assert!(
        c.dir.path().join("n3").join("snapshot.json").exists(),
        "stopping saves the snapshot"
    );
    // The peers drop everything from n3's address: the restarted n3 is cut off.
    for i in 0..3 {
        c.shared[i].faults.block(c.addrs[3]);
    }
    let cfg = c.config_of(3, c.addrs[3], Some(c.addrs[0]));
    let again = Agent::start(&cfg)
        .await
        .expect("restarts on its old address");
    c.shared[3] = again.shared();
    c.agents[3] = Some(again);
    let g = c.guard(3);
    assert_eq!(g.state, GuardState::Warming, "{g:?}");
    assert!(c.serves(3, &[3], &[0, 1, 2], &[]), "{:?}", c.view(3));
    holds_for(
        Duration::from_secs(1),
        "warming with the restored view",
        || c.guard(3).state == GuardState::Warming && c.serves(3, &[3], &[0, 1, 2], &[]),
    )
    .await;
    for i in 0..3 {
        c.shared[i].faults.clear();
    }
    let took = wait_until(
        HEAL,
        "the restarted agent synced and everyone alive",
        || c.exact_truth(),
    )
    .await;
    eprintln!("restart from snapshot: normal and exact {took:?} after reconnecting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_hook_sees_transitions_in_order() {
    let hooks = tempfile::tempdir().expect("temp dir");
    let log = hooks.path().join("states");
    let c = start(
        2,
        Setup {
            hook: Some(format!(
                "echo \"$SHOAL_GUARD_STATE\" >> \"{}\"",
                log.display()
            )),
            ..Default::default()
        },
    )
    .await;
    c.settle().await;
    // Quick operator overrides: the alerting system must end with the last state.
    const ROUNDS: usize = 8;
    for _ in 0..ROUNDS {
        c.shared[0].with_node(|n, now| n.guard_freeze(now, "test"));
        c.shared[0].with_node(|n, now| n.guard_thaw(now, "test"));
    }
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    wait_until(REACT, "the hook ran for every transition", || {
        lines().len() == 2 * ROUNDS
    })
    .await;
    let expected: Vec<String> = (0..2 * ROUNDS)
        .map(|k| if k % 2 == 0 { "frozen" } else { "normal" }.to_string())
        .collect();
    assert_eq!(lines(), expected, "hook runs out of transition order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_reports_what_it_would_hold_and_serves_the_truth() {
    let c = start(
        4,
        Setup {
            mode: GuardMode::Shadow,
            ..Default::default()
        },
    )
    .await;
    c.settle().await;
    c.cut(&[3]);
    c.wait(REACT, "n3 isolated in shadow, serving the truth", || {
        let g = c.guard(3);
        g.state == GuardState::Isolated
            && g.held == 0
            && g.would_hold == 3
            && c.serves(3, &[3], &[], &[0, 1, 2])
            && (0..3).all(|i| c.serves(i, &[0, 1, 2], &[], &[3]))
    })
    .await;
    c.heal();
    c.wait(HEAL, "all four back to the exact truth", || c.exact_truth())
        .await;
}

/// The reason of an `isolated` guard follows what the node reaches now, not what it saw
/// when it crossed the line (an operator reading `shoal guard` must be told the current
/// number).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_isolated_reason_tells_the_current_reach() {
    let c = start(4, Setup::default()).await;
    c.settle().await;
    c.cut(&[3]);
    c.wait(REACT, "n3 isolated, reaching nobody", || {
        let g = c.guard(3);
        g.state == GuardState::Isolated && g.held == 3 && c.shared[3].lock().active_peers() == 0
    })
    .await;
    let reason = c.guard(3).reason;
    assert!(
        reason.contains("0 of 3")
            || reason.contains("no active peer")
            || reason.contains("nothing received"),
        "stale reason: {reason:?}"
    );
}
