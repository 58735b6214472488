//! End-to-end tests of Lifeguard through the core (`core::lifeguard`, the foca fork's
//! `lifeguard.rs`): a node that loses most of what it receives stops accusing its healthy
//! peers, and nobody healthy is declared down meanwhile.

use crate::testnet::TestNet;

const N: usize = 8;
const LOSSY: usize = 7;

/// Runs 8 nodes (`local` profile: 200 ms probes), then for 30 s node 7 receives only about
/// one datagram in ten. Returns node 7's failed probes during the last 20 s, its highest local
/// health then (sampled every second), and every node served down by anyone during the loss.
fn run(lifeguard: bool) -> (u64, u8, Vec<(usize, String)>) {
    let mut net = TestNet::with_config(N, |_, c| c.timings.lifeguard = lifeguard);
    let formed = net.run_until_pred(20_000, |net| {
        net.nodes.iter().all(|n| n.active_members() == N - 1)
    });
    assert!(formed, "the cluster forms");
    net.run_for_ms(2_000);
    net.down_log.clear();
    net.keep_one_in.insert(LOSSY, (10, 0));
    net.run_for_ms(10_000);
    let before = net.nodes[LOSSY].probe_failures();
    let mut health = 0;
    for _ in 0..20 {
        net.run_for_ms(1_000);
        health = health.max(net.nodes[LOSSY].local_health());
    }
    let failures = net.nodes[LOSSY].probe_failures() - before;
    let downs = net
        .down_log
        .iter()
        .map(|(_, obs, name)| (*obs, name.clone()))
        .collect();
    (failures, health, downs)
}

#[test]
fn a_lossy_node_stops_accusing_its_healthy_peers() {
    let (off_failures, off_health, _) = run(false);
    let (on_failures, on_health, on_downs) = run(true);
    assert_eq!(off_health, 0, "no local health without Lifeguard");
    assert!(
        on_health >= 2,
        "the lossy node knows it is unhealthy ({on_health})"
    );
    assert!(
        on_failures * 2 <= off_failures,
        "with Lifeguard the lossy node fails {on_failures} probes, without {off_failures}"
    );
    // Over the whole loss, no healthy node was served down by anyone.
    let healthy_down: Vec<_> = on_downs
        .iter()
        .filter(|(_, name)| name != &format!("n{LOSSY}"))
        .collect();
    assert!(healthy_down.is_empty(), "{healthy_down:?}");
}
